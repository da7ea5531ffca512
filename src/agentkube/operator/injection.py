"""The RAG proxy injected into any annotated pod (pure: a pod in, a JSONPatch out).

The mutating webhook (:mod:`agentkube.admission`) calls this for every pod it is sent. A pod
annotated ``ai.openvn/rag-collection: NAME`` gets the same native sidecar an Agent with
``spec.rag`` gets (:func:`agentkube.operator.sidecars.proxy_container`, one rendering), placed
first among its init containers so that every later init container and app container finds it
started, and every app container's ``OPENAI_BASE_URL`` points at it on localhost. The upstream
is ``ai.openvn/rag-upstream`` or the Service of the Model named by ``ai.openvn/rag-model``.

Idempotent by construction: a pod that already has a ``rag-proxy`` container is left as it is,
whatever its annotations say, so a re-invoked webhook or a re-created copy of an injected pod
never gets a second proxy. Annotations that cannot be honoured refuse the pod with one sentence
naming the annotation: a pod that asked for knowledge and silently ran without it would answer
from the bare model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from agentkube.api import sidecar_contract as sc
from agentkube.api.models import DNS_LABEL, Model, Rag
from agentkube.operator.config import OperatorConfig
from agentkube.operator.errors import InjectionRefused
from agentkube.operator.serving import endpoint_for_model
from agentkube.operator.sidecars import local_url, proxy_container, proxy_volume

JSON = dict[str, Any]

# The proxy needs no Kubernetes credentials. The ServiceAccount admission plugin mounts the pod's
# token into every container (again after this webhook, by reinvocation) unless the container
# already mounts something at the token's path: an empty read-only directory there keeps it out.
TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"  # noqa: S105 - a path
NO_TOKEN_VOLUME = "rag-proxy-no-token"  # noqa: S105 - a volume name
_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")  # as the operator's defaultEndpoint.url
_RAG_FIELDS = {"collection": sc.ANNOTATION_COLLECTION, "topK": sc.ANNOTATION_TOP_K}


@dataclass(frozen=True, kw_only=True)
class InjectionAsk:
    """What a pod's annotations ask for: a collection, top-k, and one way to the model."""

    rag: Rag
    upstream: str | None = None
    model: str | None = None


def requested(annotations: Mapping[str, str] | None) -> InjectionAsk | None:
    """What the pod asks for, None when it asks for nothing; :class:`InjectionRefused` when
    the annotations are wrong."""
    annotations = annotations or {}
    collection = annotations.get(sc.ANNOTATION_COLLECTION)
    if collection is None:
        return None
    upstream = annotations.get(sc.ANNOTATION_UPSTREAM)
    model = annotations.get(sc.ANNOTATION_MODEL)
    if (upstream is None) == (model is None):
        raise InjectionRefused(
            f"annotations {sc.ANNOTATION_UPSTREAM} / {sc.ANNOTATION_MODEL}: set exactly one "
            "(the model's base URL, or a Model of this namespace)"
        )
    if upstream is not None and not _URL.match(upstream):
        raise InjectionRefused(
            f"annotation {sc.ANNOTATION_UPSTREAM}: {upstream!r} is not an http(s) URL; "
            "use e.g. http://my-model.models.svc:8000/v1"
        )
    if model is not None and not re.fullmatch(DNS_LABEL, model):
        raise InjectionRefused(
            f"annotation {sc.ANNOTATION_MODEL}: {model!r} is not a Model name; "
            "use a lowercase DNS label such as small-model"
        )
    fields: JSON = {"collection": collection}
    if (top_k := annotations.get(sc.ANNOTATION_TOP_K)) is not None:
        if not top_k.strip().isdigit():
            raise InjectionRefused(
                f"annotation {sc.ANNOTATION_TOP_K}: {top_k!r} is not a whole number; use 1-50"
            )
        fields["topK"] = int(top_k)
    return InjectionAsk(rag=_rag(fields), upstream=upstream, model=model)


def _rag(fields: JSON) -> Rag:
    try:
        return Rag.model_validate(fields)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        name = _RAG_FIELDS.get(str(err["loc"][0]), sc.ANNOTATION_COLLECTION)
        raise InjectionRefused(
            f"annotation {name}: {err['msg']} (got {fields.get(str(err['loc'][0]))!r})"
        ) from None


def already_injected(pod: JSON) -> bool:
    spec = pod.get("spec") or {}
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    return any(c.get("name") == sc.CONTAINER_NAME for c in containers)


def upstream_for(
    ask: InjectionAsk, namespace: str, models: Mapping[str, Model], config: OperatorConfig
) -> str:
    """The proxy's upstream: the annotation's URL, or the URL the named Model is served at."""
    if ask.upstream is not None:
        return ask.upstream
    assert ask.model is not None  # requested() guarantees exactly one
    resolved = endpoint_for_model(ask.model, namespace, models, config)
    if resolved is None:
        raise InjectionRefused(
            f"annotation {sc.ANNOTATION_MODEL}: no Model {ask.model!r} in namespace "
            f"{namespace!r}; create it, or set {sc.ANNOTATION_UPSTREAM} instead"
        )
    return resolved.base_url


def injection_patch(
    pod: JSON, *, upstream: str, ask: InjectionAsk, config: OperatorConfig
) -> list[JSON]:
    """The JSONPatch (RFC 6902) that adds the proxy to ``pod`` and points its apps at it."""
    spec = pod.get("spec") or {}
    _check_pod(spec, config)
    sidecar = proxy_container(
        upstream=upstream,
        collection=ask.rag.collection,
        top_k=ask.rag.top_k,
        config=config,
        user_id=config.agent_user_id,  # the pod may set no uid; the proxy never runs as root
    )
    sidecar["volumeMounts"].append(
        {"name": NO_TOKEN_VOLUME, "mountPath": TOKEN_PATH, "readOnly": True}
    )
    ops: list[JSON] = [
        _add_first("/spec/initContainers", spec.get("initContainers"), sidecar),
        _add_last("/spec/volumes", spec.get("volumes"), proxy_volume(config)),
        {
            "op": "add",
            "path": "/spec/volumes/-",
            "value": {"name": NO_TOKEN_VOLUME, "emptyDir": {"sizeLimit": "1Mi"}},
        },
    ]
    base_url = {"name": sc.ENV_OPENAI_BASE_URL, "value": f"{local_url(config)}/v1"}
    for i, container in enumerate(spec.get("containers") or []):
        ops.append(_set_env(f"/spec/containers/{i}/env", container.get("env"), base_url))
    return ops


def _check_pod(spec: JSON, config: OperatorConfig) -> None:
    if spec.get("hostNetwork"):
        raise InjectionRefused(
            f"annotation {sc.ANNOTATION_COLLECTION}: the RAG proxy is not injected into a "
            "hostNetwork pod (it would listen on the node); remove the annotation"
        )
    port = config.rag_sidecar.port
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        if any(p.get("containerPort") == port for p in container.get("ports") or []):
            raise InjectionRefused(
                f"annotation {sc.ANNOTATION_COLLECTION}: container {container.get('name')!r} "
                f"declares port {port}, the RAG proxy's; move it to another port"
            )


def _add_first(path: str, items: list[JSON] | None, value: JSON) -> JSON:
    if not items:
        return {"op": "add", "path": path, "value": [value]}
    return {"op": "add", "path": f"{path}/0", "value": value}


def _add_last(path: str, items: list[JSON] | None, value: JSON) -> JSON:
    if not items:
        return {"op": "add", "path": path, "value": [value]}
    return {"op": "add", "path": f"{path}/-", "value": value}


def _set_env(path: str, env: list[JSON] | None, value: JSON) -> JSON:
    """Add the variable, or replace the container's own definition of it (the proxy is the
    model now: a base URL the app set for itself would bypass it)."""
    for j, var in enumerate(env or []):
        if var.get("name") == value["name"]:
            return {"op": "replace", "path": f"{path}/{j}", "value": value}
    return _add_last(path, env, value)
