"""Print, as YAML, the objects the operator renders for the Agents and Models of manifest files.

    .venv/bin/python -m hack.render examples/seed-agent.yaml [--namespace NS] [--config FILE]

The operator's own pure rendering (no cluster): what the scanners (hack/scan.sh) check and the
pod-hardening tests walk. An Agent's ``spec.model`` that no file declares is rendered as a
Model served in-cluster on one GPU, so the model server is covered too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from agentkube.api.loading import Resource, load_file
from agentkube.api.models import Agent, Model
from agentkube.errors import AgentkubeError
from agentkube.operator.config import OperatorConfig, load_config
from agentkube.operator.rendering import render_agent
from agentkube.operator.serving import endpoint_for_model, render_model

JSON = dict[str, Any]


def _placed(obj: Agent | Model, namespace: str) -> Any:
    meta = obj.metadata.model_copy(update={"namespace": namespace, "uid": f"uid-{obj.kind}"})
    return obj.model_copy(update={"metadata": meta})


def served(name: str) -> Model:
    return Model.model_validate(
        {
            "apiVersion": "ai.openvn/v1",
            "kind": "Model",
            "metadata": {"name": name},
            "spec": {"serve": {"model": name, "gpus": 1}},
        }
    )


def render_resources(
    resources: Iterable[Resource], namespace: str, config: OperatorConfig
) -> list[JSON]:
    """Every child of the Models and Agents, as the operator would apply them (other kinds
    render no pods here)."""
    resources = [_placed(r, namespace) for r in resources if isinstance(r, Agent | Model)]
    models = {r.metadata.name: r for r in resources if isinstance(r, Model)}
    for agent in (r for r in resources if isinstance(r, Agent)):
        models.setdefault(agent.spec.model, _placed(served(agent.spec.model), namespace))
    objects = [o for m in models.values() for o in render_model(m, namespace, config)]
    for agent in (r for r in resources if isinstance(r, Agent)):
        model = endpoint_for_model(agent.spec.model, namespace, models, config)
        objects += render_agent(agent, namespace, model, config)
    return objects


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--namespace", default="agents")
    parser.add_argument("--config", type=Path, help="operator configuration YAML")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        resources = [r for path in args.files for r in load_file(path)]
    except AgentkubeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    yaml.safe_dump_all(
        render_resources(resources, args.namespace, config), sys.stdout, sort_keys=False
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
