"""The mutating admission webhook: an AdmissionReview v1 in, a JSONPatch out (docs/rag.md).

The decisions are :mod:`agentkube.operator.injection` (pure); this module is the HTTP around
them and the one read the webhook makes: the Model an ``ai.openvn/rag-model`` annotation names
(RBAC: ``get models``, nothing else). A pod that cannot be given what it asks for is answered
``allowed: false`` with the one-line reason, which the API server shows whoever created the
pod. A body that is not an AdmissionReview is answered 400, and the API server then applies the
webhook's ``failurePolicy``. Only pod creations are changed: a running pod's containers are
immutable, so any other operation or kind is allowed as it is.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any, Protocol, cast

import httpx2
from lightkube import ApiError, AsyncClient
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from agentkube.admission.errors import BadReview, ModelUnreadable
from agentkube.api import sidecar_contract as sc
from agentkube.api.loading import describe
from agentkube.api.models import Model
from agentkube.bounded_bodies import BoundedBodies
from agentkube.kube_errors import classify
from agentkube.operator.applying import ModelResource
from agentkube.operator.config import OperatorConfig
from agentkube.operator.errors import InjectionRefused
from agentkube.operator.injection import already_injected, injection_patch, requested, upstream_for

JSON = dict[str, Any]
log = logging.getLogger(__name__)

REVIEW_PATH = "/inject-rag"
REVIEW_VERSION = "admission.k8s.io/v1"
MAX_REVIEW_BYTES = 4 * 1024 * 1024  # a pod is at most ~1.5 MiB in etcd; the review wraps it


class ModelLookup(Protocol):
    """The Model called ``name`` in ``namespace``, or None when there is none."""

    async def __call__(self, name: str, namespace: str) -> Model | None: ...


class KubeModels:
    """Models read from the API server (the webhook's only right: ``get models``)."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    async def __call__(self, name: str, namespace: str) -> Model | None:
        try:
            obj = await self.client.get(ModelResource, name, namespace=namespace)
        except (ApiError, httpx2.TransportError) as e:
            failure = classify(e)
            if failure is not None and failure.kind == "not_found":
                return None
            detail = failure.detail if failure else repr(e)
            raise ModelUnreadable(
                f"annotation {sc.ANNOTATION_MODEL}: cannot read Model {namespace}/{name} "
                f"({detail}); retry once the API server answers"
            ) from e
        body: JSON = dict(cast(Any, obj).to_dict())
        try:
            return Model.model_validate(
                {k: body.get(k) for k in ("apiVersion", "kind", "metadata", "spec")}
            )
        except ValidationError as e:
            raise InjectionRefused(
                f"annotation {sc.ANNOTATION_MODEL}: Model {namespace}/{name} is invalid "
                f"({describe(e)}); fix the Model"
            ) from None


async def decide(
    pod: JSON, namespace: str, config: OperatorConfig, models: ModelLookup
) -> list[JSON]:
    """The patch for a pod being created (empty: leave it as it is)."""
    if already_injected(pod):
        return []
    ask = requested((pod.get("metadata") or {}).get("annotations"))
    if ask is None:
        return []
    found: dict[str, Model] = {}
    if ask.model is not None and (model := await models(ask.model, namespace)) is not None:
        found[ask.model] = model
    upstream = upstream_for(ask, namespace, found, config)
    return injection_patch(pod, upstream=upstream, ask=ask, config=config)


def read_review(body: object) -> tuple[str, JSON]:
    """The request's uid and the request itself, or :class:`BadReview`."""
    if not isinstance(body, dict) or body.get("kind") != "AdmissionReview":
        raise BadReview("expected an AdmissionReview object")
    if body.get("apiVersion") != REVIEW_VERSION:
        raise BadReview(f"apiVersion {body.get('apiVersion')!r}: only {REVIEW_VERSION} is served")
    request = body.get("request")
    if not isinstance(request, dict) or not isinstance(request.get("uid"), str):
        raise BadReview("request.uid: required; send the AdmissionReview the API server made")
    return request["uid"], request


def review_response(
    uid: str, patch: list[JSON] | None = None, refusal: tuple[int, str] | None = None
) -> JSON:
    response: JSON = {"uid": uid, "allowed": refusal is None}
    if refusal is not None:
        response["status"] = {"code": refusal[0], "message": refusal[1]}
    elif patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return {"apiVersion": REVIEW_VERSION, "kind": "AdmissionReview", "response": response}


def create_app(config: OperatorConfig, models: ModelLookup) -> BoundedBodies:
    """The webhook's ASGI app: ``POST /inject-rag`` and ``GET /healthz``."""

    async def review(request: Request) -> Response:
        try:
            uid, req = read_review(json.loads(await request.body()))
        except (ValueError, BadReview) as e:
            return PlainTextResponse(f"not an AdmissionReview: {e}\n", status_code=400)
        pod, namespace = req.get("object"), req.get("namespace") or ""
        if req.get("operation") != "CREATE" or (req.get("kind") or {}).get("kind") != "Pod":
            return JSONResponse(review_response(uid))
        if not isinstance(pod, dict):
            return JSONResponse(review_response(uid, refusal=(400, "request.object: not a Pod")))
        try:
            patch = await decide(pod, namespace, config, models)
        except InjectionRefused as e:
            log.info("refused pod %s/%s: %s", namespace, _pod_name(pod), e)
            return JSONResponse(review_response(uid, refusal=(400, str(e))))
        except ModelUnreadable as e:
            log.warning("refused pod %s/%s: %s", namespace, _pod_name(pod), e)
            return JSONResponse(review_response(uid, refusal=(503, str(e))))
        if patch:
            log.info("injected the RAG proxy into pod %s/%s", namespace, _pod_name(pod))
        return JSONResponse(review_response(uid, patch))

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok\n")

    app = Starlette(
        routes=[Route(REVIEW_PATH, review, methods=["POST"]), Route("/healthz", healthz)]
    )
    return BoundedBodies(app, max_bytes=MAX_REVIEW_BYTES, read_timeout_s=10.0)


def _pod_name(pod: JSON) -> str:
    meta = pod.get("metadata") or {}
    return str(meta.get("name") or f"{meta.get('generateName', '')}*")
