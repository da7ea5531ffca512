"""The RAG proxy injected into any annotated pod: annotations in, a JSONPatch out (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from agentkube.api import sidecar_contract as sc
from agentkube.operator.config import OperatorConfig
from agentkube.operator.errors import InjectionRefused
from agentkube.operator.injection import (
    already_injected,
    injection_patch,
    requested,
    upstream_for,
)
from agentkube.operator.rendering import render_agent
from agentkube.operator.serving import endpoint_for_model
from tests.operator.conftest import agent, model

CONFIG = OperatorConfig()
UPSTREAM = "http://llm.models.svc:8000/v1"


def annotated(**extra: str) -> dict[str, str]:
    return {sc.ANNOTATION_COLLECTION: "handbook", sc.ANNOTATION_UPSTREAM: UPSTREAM, **extra}


def app_pod(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "app", "annotations": annotated()},
        "spec": {"containers": [{"name": "app", "image": "app:1"}], **spec},
    }


def patch_for(pod: dict[str, Any], **annotations: str) -> list[dict[str, Any]]:
    ask = requested(annotations or annotated())
    assert ask is not None
    return injection_patch(pod, upstream=UPSTREAM, ask=ask, config=CONFIG)


def test_a_pod_without_the_collection_annotation_asks_for_nothing() -> None:
    assert requested(None) is None
    assert requested({sc.ANNOTATION_UPSTREAM: UPSTREAM}) is None


def test_the_annotations_give_collection_top_k_and_upstream() -> None:
    ask = requested(annotated(**{sc.ANNOTATION_TOP_K: "7"}))
    assert ask is not None
    assert (ask.rag.collection, ask.rag.top_k, ask.upstream, ask.model) == (
        "handbook",
        7,
        UPSTREAM,
        None,
    )
    by_model = requested({sc.ANNOTATION_COLLECTION: "handbook", sc.ANNOTATION_MODEL: "small"})
    assert by_model is not None and by_model.model == "small" and by_model.rag.top_k == 4


@pytest.mark.parametrize(
    ("annotations", "named", "says"),
    [
        ({sc.ANNOTATION_COLLECTION: "handbook"}, sc.ANNOTATION_UPSTREAM, "set exactly one"),
        (annotated(**{sc.ANNOTATION_MODEL: "small"}), sc.ANNOTATION_MODEL, "set exactly one"),
        (annotated(**{sc.ANNOTATION_UPSTREAM: "llm:8000"}), sc.ANNOTATION_UPSTREAM, "http(s) URL"),
        (
            {sc.ANNOTATION_COLLECTION: "handbook", sc.ANNOTATION_MODEL: "Small_Model"},
            sc.ANNOTATION_MODEL,
            "not a Model name",
        ),
        (annotated(**{sc.ANNOTATION_COLLECTION: "Hand Book"}), sc.ANNOTATION_COLLECTION, "pattern"),
        (annotated(**{sc.ANNOTATION_TOP_K: "many"}), sc.ANNOTATION_TOP_K, "not a whole number"),
        (annotated(**{sc.ANNOTATION_TOP_K: "51"}), sc.ANNOTATION_TOP_K, "less than or equal to 50"),
    ],
)
def test_bad_annotations_are_refused_with_one_line_naming_the_annotation(
    annotations: dict[str, str], named: str, says: str
) -> None:
    with pytest.raises(InjectionRefused) as refused:
        requested(annotations)
    message = str(refused.value)
    assert message.startswith("annotation") and named in message and says in message
    assert "\n" not in message


def test_the_sidecar_is_the_one_agents_get_first_among_init_containers() -> None:
    pod = app_pod(initContainers=[{"name": "migrate", "image": "app:1"}])
    ops = patch_for(pod)
    assert ops[0]["op"] == "add" and ops[0]["path"] == "/spec/initContainers/0"
    sidecar = ops[0]["value"]
    # The same rendering the operator gives an Agent with spec.rag (but for the pinned uid).
    resolved = endpoint_for_model("m", "ns", {"m": model("m", endpoint={"url": UPSTREAM})}, CONFIG)
    children = render_agent(
        agent(rag={"collection": "handbook", "topK": 4}), "ns", resolved, CONFIG
    )
    deployment = next(c for c in children if c["kind"] == "Deployment")
    (agents,) = deployment["spec"]["template"]["spec"]["initContainers"]
    mounts = sidecar["volumeMounts"]
    assert mounts[-1] == {
        "name": "rag-proxy-no-token",
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
        "readOnly": True,
    }
    same = {**sidecar, "securityContext": agents["securityContext"], "volumeMounts": mounts[:-1]}
    assert same == agents
    assert sidecar["securityContext"]["runAsUser"] == CONFIG.agent_user_id
    assert sidecar["restartPolicy"] == "Always"


def test_a_pod_without_lists_gets_them_created() -> None:
    ops = patch_for(app_pod())
    paths = {op["path"]: op for op in ops}
    assert paths["/spec/initContainers"]["value"][0]["name"] == sc.CONTAINER_NAME
    tmp = {"name": "rag-proxy-tmp", "emptyDir": {"sizeLimit": CONFIG.tmp_size_limit}}
    assert paths["/spec/volumes"]["value"] == [tmp]
    no_token = {"name": "rag-proxy-no-token", "emptyDir": {"sizeLimit": "1Mi"}}
    assert paths["/spec/volumes/-"]["value"] == no_token
    assert paths["/spec/containers/0/env"]["value"] == [
        {"name": "OPENAI_BASE_URL", "value": "http://127.0.0.1:8081/v1"}
    ]


def test_every_app_container_is_pointed_at_the_proxy_replacing_its_own_base_url() -> None:
    pod = app_pod(
        containers=[
            {"name": "a", "env": [{"name": "X", "value": "1"}]},
            {
                "name": "b",
                "env": [{"name": "X", "value": "1"}, {"name": "OPENAI_BASE_URL", "value": "x"}],
            },
        ],
        volumes=[{"name": "data", "emptyDir": {}}],
    )
    ops = {op["path"]: op for op in patch_for(pod)}
    added = [op["value"]["name"] for op in patch_for(pod) if op["path"] == "/spec/volumes/-"]
    assert added == ["rag-proxy-tmp", "rag-proxy-no-token"]
    assert ops["/spec/containers/0/env/-"]["value"]["name"] == "OPENAI_BASE_URL"
    replaced = ops["/spec/containers/1/env/1"]
    assert replaced["op"] == "replace"
    assert replaced["value"] == {"name": "OPENAI_BASE_URL", "value": "http://127.0.0.1:8081/v1"}


def test_a_pod_that_has_the_proxy_is_never_injected_again() -> None:
    assert not already_injected(app_pod())
    injected = app_pod(initContainers=[{"name": sc.CONTAINER_NAME}])
    assert already_injected(injected)
    assert already_injected(app_pod(containers=[{"name": sc.CONTAINER_NAME}]))


def test_a_host_network_pod_or_a_clashing_port_is_refused() -> None:
    with pytest.raises(InjectionRefused, match="hostNetwork"):
        patch_for(app_pod(hostNetwork=True))
    clash = app_pod(containers=[{"name": "web", "ports": [{"containerPort": 8081}]}])
    with pytest.raises(InjectionRefused, match="container 'web' declares port 8081"):
        patch_for(clash)


def test_a_model_annotation_resolves_to_the_models_service_and_a_missing_one_is_named() -> None:
    ask = requested({sc.ANNOTATION_COLLECTION: "handbook", sc.ANNOTATION_MODEL: "small"})
    assert ask is not None
    served = {"small": model("small")}
    assert upstream_for(ask, "team", served, CONFIG) == "http://small-model.team.svc:8000/v1"
    with pytest.raises(InjectionRefused) as refused:
        upstream_for(ask, "team", {}, CONFIG)
    assert str(refused.value) == (
        "annotation ai.openvn/rag-model: no Model 'small' in namespace 'team'; create it, "
        "or set ai.openvn/rag-upstream instead"
    )
