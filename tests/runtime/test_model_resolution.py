"""Which model answers: offline, a Model's endpoint, or a base URL — decided without I/O."""

from __future__ import annotations

import pytest

from agentkube.api.loading import parse_documents
from agentkube.api.models import Model
from agentkube.runtime.errors import ModelConfigError
from agentkube.runtime.model_resolution import choose_model
from tests.runtime.helpers import agent_from

MODEL = (
    "apiVersion: ai.openvn/v1\nkind: Model\nmetadata: {name: brain}\n"
    "spec: {endpoint: {url: 'http://models.internal:8000/v1', model: llama-3-70b-instruct}}\n"
)


def _model() -> Model:
    model = parse_documents(MODEL)[0]
    assert isinstance(model, Model)
    return model


def test_no_endpoint_anywhere_falls_back_to_offline_and_says_why() -> None:
    choice = choose_model(agent_from("{model: llama-3-70b}"), [], environ={})
    assert choice.kind == "offline"
    assert choice.label == "offline"
    assert choice.note is not None and "'llama-3-70b'" in choice.note


def test_a_declared_model_gives_its_url_and_model_id() -> None:
    choice = choose_model(agent_from("{model: brain}"), [_model()], environ={})
    assert (choice.kind, choice.base_url, choice.model_id) == (
        "openai",
        "http://models.internal:8000/v1",
        "llama-3-70b-instruct",
    )


def test_environment_base_url_and_model_id_are_used() -> None:
    environ = {"AGENTKUBE_MODEL_BASE_URL": "http://x:1/v1", "AGENTKUBE_MODEL_ID": "served"}
    choice = choose_model(agent_from("{model: m}"), [], environ=environ)
    assert (choice.base_url, choice.model_id, choice.api_key) == ("http://x:1/v1", "served", None)


def test_flags_win_over_the_environment_and_the_manifest() -> None:
    environ = {"AGENTKUBE_MODEL_BASE_URL": "http://env:1/v1", "OPENAI_API_KEY": "env-key"}
    choice = choose_model(
        agent_from("{model: brain}"),
        [_model()],
        base_url="http://flag:2/v1",
        api_key="flag-key",
        environ=environ,
    )
    assert (choice.base_url, choice.api_key) == ("http://flag:2/v1", "flag-key")


def test_model_offline_overrides_a_configured_endpoint() -> None:
    environ = {"AGENTKUBE_MODEL_BASE_URL": "http://env:1/v1"}
    choice = choose_model(
        agent_from("{model: brain}"), [_model()], override="offline", environ=environ
    )
    assert choice.kind == "offline"
    assert choice.note is None


def test_a_base_url_without_a_scheme_is_a_user_error() -> None:
    with pytest.raises(ModelConfigError, match="must start with http"):
        choose_model(agent_from("{model: m}"), [], base_url="localhost:8000", environ={})
