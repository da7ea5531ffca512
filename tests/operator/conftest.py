"""Builders for the operator's pure tests: Agents and Models as the API server returns them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from agentkube.api.models import Agent, Model

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed-agent.yaml"


def agent(**spec: Any) -> Agent:
    """An Agent as read from the API server (uid and generation set); seed spec unless given."""
    base = yaml.safe_load(SEED.read_text())["spec"]
    return Agent.model_validate(
        {
            "apiVersion": "ai.openvn/v1",
            "kind": "Agent",
            "metadata": {
                "name": spec.pop("name", "research-agent"),
                "uid": "uid-1",
                "generation": 1,
            },
            "spec": {**base, **spec},
        }
    )


def model(name: str = "llama-3-70b", **spec: Any) -> Model:
    return Model.model_validate(
        {
            "apiVersion": "ai.openvn/v1",
            "kind": "Model",
            "metadata": {"name": name, "uid": "uid-m", "generation": 1},
            "spec": spec or {"serve": {"model": "meta-llama/Meta-Llama-3-70B-Instruct"}},
        }
    )
