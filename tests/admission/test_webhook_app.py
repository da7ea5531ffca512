"""The webhook's HTTP contract offline (httpx's ASGITransport), and its command's bad flags.

The API server's side of it is tests/admission/test_rag_webhook_cluster.py.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentkube.admission.webhook import REVIEW_PATH, create_app
from agentkube.api import sidecar_contract as sc
from agentkube.api.models import Model
from agentkube.operator.config import OperatorConfig
from tests.cli_process import agentkube

UPSTREAM = "http://llm.models.svc:8000/v1"


async def no_models(name: str, namespace: str) -> Model | None:
    raise AssertionError(f"no Model is read for an upstream annotation (asked {namespace}/{name})")


def review(operation: str = "CREATE", kind: str = "Pod", **annotations: str) -> dict[str, Any]:
    pod = {
        "metadata": {"name": "chat", "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
    }
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": {"group": "", "version": "v1", "kind": kind},
            "operation": operation,
            "namespace": "team",
            "object": pod,
        },
    }


async def post(body: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=create_app(OperatorConfig(), no_models))
    async with httpx.AsyncClient(transport=transport, base_url="https://webhook") as client:
        return await client.post(REVIEW_PATH, content=json.dumps(body))


ASKED = {sc.ANNOTATION_COLLECTION: "handbook", sc.ANNOTATION_UPSTREAM: UPSTREAM}


async def test_an_annotated_pod_is_answered_with_a_base64_json_patch() -> None:
    answer = (await post(review(**ASKED))).json()
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert response["uid"] == "u-1" and response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(response["patch"]))
    assert [op["path"] for op in patch] == [
        "/spec/initContainers",
        "/spec/volumes",
        "/spec/volumes/-",
        "/spec/containers/0/env",
    ]


@pytest.mark.parametrize(
    "body",
    [review(operation="UPDATE", **ASKED), review(kind="Service", **ASKED), review(team="a")],
)
async def test_what_is_not_an_annotated_pod_creation_is_allowed_unchanged(
    body: dict[str, Any],
) -> None:
    response = (await post(body)).json()["response"]
    assert response == {"uid": "u-1", "allowed": True}


async def test_a_refusal_carries_the_one_line_reason() -> None:
    response = (await post(review(**{sc.ANNOTATION_COLLECTION: "handbook"}))).json()["response"]
    assert response["allowed"] is False and response["status"]["code"] == 400
    assert response["status"]["message"].startswith("annotations ai.openvn/rag-upstream")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"kind": "Pod"}, "expected an AdmissionReview object"),
        ({**review(), "apiVersion": "admission.k8s.io/v1beta1"}, "only admission.k8s.io/v1"),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}, "request.uid"),
    ],
)
async def test_a_body_that_is_not_an_admission_review_is_a_400(
    body: dict[str, Any], says: str
) -> None:
    answer = await post(body)
    assert answer.status_code == 400 and says in answer.text


def test_the_command_refuses_a_missing_or_unusable_certificate_in_one_line(
    tmp_path: Path,
) -> None:
    missing = agentkube("sidecar", "webhook", "--tls-cert", str(tmp_path / "no.crt"),
                        "--tls-key", str(tmp_path / "no.key"))  # fmt: skip
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"error: --tls-cert {tmp_path / 'no.crt'}: no such file; pass the PEM file of the "
        "webhook's Secret"
    ]
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    unusable = agentkube("sidecar", "webhook", "--tls-cert", str(junk), "--tls-key", str(junk))
    assert unusable.returncode == 2
    (line,) = unusable.stderr.strip().splitlines()
    assert "not a usable certificate and key" in line
