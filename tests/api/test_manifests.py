"""Manifests parse into typed objects, and every bad manifest gets one line naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentkube.api import Agent, ManifestError, Model, load_file, parse_documents, single_agent

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed-agent.yaml"
SEED_TEXT = """\
apiVersion: ai.openvn/v1
kind: Agent
metadata:
  name: research-agent
spec:
  model: llama-3-70b
  tools:
    - web-browser
    - python-interpreter
  memory: persistent
"""

HEAD = "apiVersion: ai.openvn/v1\nkind: Agent\nmetadata: {name: a}\n"


def test_seed_manifest_is_the_articles_manifest_verbatim() -> None:
    assert SEED.read_text() == SEED_TEXT


def test_seed_manifest_parses_into_an_agent() -> None:
    agent = single_agent(load_file(SEED), str(SEED))
    assert isinstance(agent, Agent)
    assert agent.metadata.name == "research-agent"
    assert agent.spec.model == "llama-3-70b"
    assert agent.spec.tools == ["web-browser", "python-interpreter"]
    assert agent.spec.memory == "persistent"
    assert agent.spec.role == "standalone"


def test_a_file_may_hold_a_model_and_an_agent() -> None:
    text = (
        "apiVersion: ai.openvn/v1\nkind: Model\nmetadata: {name: m}\n"
        "spec: {endpoint: {url: 'http://127.0.0.1:9/v1', model: tiny}}\n---\n"
        + HEAD
        + "spec: {model: m}\n"
    )
    model, agent = parse_documents(text, "f.yaml")
    assert isinstance(model, Model) and isinstance(agent, Agent)
    assert model.spec.endpoint is not None and model.spec.endpoint.model == "tiny"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (HEAD + "spec: {model: m, memory: forever}", "spec.memory: Input should be 'none'"),
        (HEAD + "spec: {tools: []}", "spec.model: required field is missing"),
        (HEAD + "spec: {model: m, tools: [shell]}", "spec.tools[0]: unknown tool 'shell'"),
        (HEAD + "spec: {model: m, toolz: []}", "spec.toolz: unknown field"),
        (HEAD + "spec: {model: m, replicas: -1}", "spec.replicas: Input should be greater"),
        (HEAD + "spec: {model: m, tools: [web-browser, web-browser]}", "listed twice"),
        (HEAD + "spec: {model: m, resources: {limits: {cpu: lots}}}", "not a Kubernetes quantity"),
        (
            "apiVersion: ai.openvn/v1\nkind: Agent\nmetadata: {name: A_b}\nspec: {model: m}",
            "DNS label",
        ),
        ("apiVersion: ai.openvn/v2\nkind: Agent\n", "apiVersion 'ai.openvn/v2' is not supported"),
        ("apiVersion: ai.openvn/v1\nkind: Agnet\n", "kind 'Agnet' is not supported"),
        ("apiVersion: ai.openvn/v1\nkind: Model\nmetadata: {name: m}\nspec: {}", "exactly one of"),
        ("kind: [unclosed", "not valid YAML (line 1"),
        ("- just\n- a list\n", "expected a mapping"),
        ("", "no documents"),
    ],
)
def test_bad_manifest_gets_one_line_naming_the_problem(text: str, expected: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_documents(text, "bad.yaml")
    message = str(caught.value)
    assert message.startswith("bad.yaml")
    assert expected in message
    assert "\n" not in message


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"nope\.yaml: no such file"):
        load_file(tmp_path / "nope.yaml")


def test_oversized_manifest_is_refused_before_parsing(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(HEAD + "spec: {model: m}\n# " + "x" * 2_000_000)
    with pytest.raises(ManifestError, match="more than"):
        load_file(big)


def test_a_planner_without_agents_to_delegate_to_is_allowed_locally_but_published_as_a_rule() -> (
    None
):
    # The CEL rule lives in the CRD (checked by the API server); locally the spec still parses so
    # `agentkube run` can explain the problem at run time.
    agent = parse_documents(HEAD + "spec: {model: m, role: planner}")[0]
    assert isinstance(agent, Agent) and agent.spec.role == "planner"


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_manifest_parses(path: Path) -> None:
    assert load_file(path)
