"""KnowledgeBases in a cluster: the ingestion Job, its identity and its outcome (pure).

A KnowledgeBase is ingested by a Job running ``agentkube memory sync-knowledgebase`` (the same
ingestion as on one machine, :mod:`agentkube.memory.knowledge_bases`) in the project's image:

- **what it reads**: the KnowledgeBase itself (inline documents included) from a ConfigMap the
  operator writes, ``<kb>-kb``; each source ConfigMap mounted read-only as a folder (only the keys
  named, when ``keys`` is given); URLs fetched by the Job;
- **identity**: the Job is named for a hash of the spec and of the source ConfigMaps' data
  (:func:`source_hash`), so an unchanged KnowledgeBase never makes a second Job and a changed
  ConfigMap makes a new one; the hash ingested last is kept in ``status.sourceHash``;
- **locked down**: Pod Security ``restricted``, read-only root, no ServiceAccount token, no
  service links, a sized ``/tmp`` emptyDir, the agents' resource defaults, a deadline and a
  bounded number of retries; the namespace's vector store exactly as agent pods get it
  (``AGENTKUBE_VECTOR_URL``, tenant ``AGENTKUBE_NAMESPACE``), and a NetworkPolicy letting it
  reach only DNS, the vector store and — only with URL sources — their ports on public
  addresses (the agents' web exclusions apply);
- **report**: the Job writes its counts (``documents``, ``chunks``, ...) to its termination log,
  which the operator reads from the Job's pod once the Job completed.

Deleting a KnowledgeBase runs a second, short Job of the same shape, ``agentkube memory delete``
of its collection, before its finalizer is released: the operator itself never connects to the
vector store (Chroma has no per-tenant authentication, so whatever reaches it could read every
namespace's knowledge; the Job reaches it with exactly one namespace's identity, as its agents).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from agentkube.api import pod_contract as pc
from agentkube.api.mcp import server_port
from agentkube.api.models import KnowledgeBase
from agentkube.api.pod_contract import restricted_container_security, restricted_pod_security
from agentkube.operator.config import OperatorConfig
from agentkube.operator.memory import url_port
from agentkube.operator.naming import bounded_name, common_labels, digest, owner_reference, stamp
from agentkube.operator.networking import _anywhere, peer_rule
from agentkube.operator.placement import pool_scheduling

JSON = dict[str, Any]

KNOWLEDGEBASE_LABEL = "ai.openvn/knowledgebase"
SOURCE_HASH_LABEL = "ai.openvn/source-hash"
COMPONENT = "knowledge-ingestion"
FINALIZER = "ai.openvn/knowledgebase-collection"
MANIFEST_KEY = "knowledgebase.yaml"
MOUNT = "/etc/agentkube/knowledge"
CONFIG_MAPS_MOUNT = f"{MOUNT}/configmaps"
TERMINATION_LOG = "/dev/termination-log"
HASH_LENGTH = 10
DEADLINE_SECONDS = 1800
BACKOFF_LIMIT = 2
KEEP_FINISHED_SECONDS = 3600  # a finished Job (and its pod's log) stays this long to look at


def child_name(kb: str) -> str:
    """The name of a KnowledgeBase's manifest ConfigMap and NetworkPolicy."""
    return bounded_name(kb, "-kb")


def job_name(kb: str, source: str) -> str:
    return bounded_name(kb, f"-kb-{source}")


def removal_job_name(kb: str) -> str:
    return bounded_name(kb, "-kb-remove")


def ingestion_pods(kb: str) -> dict[str, str]:
    return {KNOWLEDGEBASE_LABEL: kb, "app.kubernetes.io/component": COMPONENT}


def labels(kb: str) -> dict[str, str]:
    return {**common_labels(COMPONENT, kb), KNOWLEDGEBASE_LABEL: kb}


# --------------------------------------------------------------------------- identity


class SourceMissing(Exception):
    """A ConfigMap (or a key of one) a KnowledgeBase names is not there; the message says so."""


def selected_data(kb: KnowledgeBase, config_maps: Mapping[str, JSON | None]) -> JSON:
    """``{configmap: {key: text}}`` of what ``kb`` ingests from its ConfigMaps (the live
    bodies in ``config_maps``, by name); :class:`SourceMissing` naming what is not there."""
    selected: JSON = {}
    for source in kb.spec.sources.config_maps:
        body = config_maps.get(source.name)
        if body is None:
            raise SourceMissing(
                f"ConfigMap {source.name} (spec.sources.configMaps) does not exist in this "
                "namespace; create it or remove it from the KnowledgeBase"
            )
        data: dict[str, str] = dict(body.get("data") or {})
        keys = source.keys if source.keys is not None else sorted(data)
        missing = [k for k in keys if k not in data]
        if missing:
            raise SourceMissing(
                f"ConfigMap {source.name} has no key {', '.join(missing)} (spec.sources."
                "configMaps[].keys); add it as text data or drop it from keys"
            )
        selected[source.name] = {k: data[k] for k in keys}
    return selected


def source_hash(kb: KnowledgeBase, selected: JSON) -> str:
    """Changes exactly when what the Job would ingest changes: the spec or the ConfigMaps' data."""
    spec = kb.spec.model_dump(mode="json", by_alias=True)
    return digest({"spec": spec, "configMaps": selected}, HASH_LENGTH)


# --------------------------------------------------------------------------- rendering


def manifest(kb: KnowledgeBase) -> str:
    """The KnowledgeBase as the Job reads it (name and spec; nothing the API server added)."""
    body = {
        "apiVersion": kb.api_version,
        "kind": kb.kind,
        "metadata": {"name": kb.metadata.name},
        "spec": kb.spec.model_dump(mode="json", by_alias=True, exclude_defaults=True),
    }
    return yaml.safe_dump(body, sort_keys=False)


def _meta(name: str, kb: KnowledgeBase, namespace: str, **extra: Any) -> JSON:
    owner = owner_reference("KnowledgeBase", kb.metadata.name, kb.metadata.uid or "")
    return {
        "name": name,
        "namespace": namespace,
        "labels": {**labels(kb.metadata.name), **extra},
        "ownerReferences": [owner],
    }


def _volumes(kb: KnowledgeBase) -> tuple[list[JSON], list[JSON]]:
    """The pod's volumes and the container's mounts: /tmp, the manifest, each ConfigMap."""
    volumes: list[JSON] = [
        {"name": "manifest", "configMap": {"name": child_name(kb.metadata.name)}},
    ]
    mounts: list[JSON] = [{"name": "manifest", "mountPath": MOUNT, "readOnly": True}]
    for i, source in enumerate(kb.spec.sources.config_maps):
        volume: JSON = {"name": source.name}
        if source.keys is not None:
            volume["items"] = [{"key": k, "path": k} for k in source.keys]
        volumes.append({"name": f"source-{i}", "configMap": volume})
        path = f"{CONFIG_MAPS_MOUNT}/{source.name}"
        mounts.append({"name": f"source-{i}", "mountPath": path, "readOnly": True})
    return volumes, mounts


def _job(
    kb: KnowledgeBase, namespace: str, config: OperatorConfig, name: str, args: list[str]
) -> JSON:
    vector = config.memory.vector if config.memory is not None else None
    assert vector is not None  # the reconciler renders Jobs only with a vector store
    volumes, mounts = _volumes(kb)
    resources = config.agent_resources.model_dump(by_alias=True)
    container = {
        "name": "ingest",
        "image": config.agent_image,
        "imagePullPolicy": config.image_pull_policy,
        "args": args,
        "env": [
            {
                "name": pc.ENV_NAMESPACE,
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            {"name": pc.ENV_VECTOR_URL, "value": vector.url},
            {"name": pc.ENV_DATA_DIR, "value": "/tmp/agentkube"},
            {"name": "HOME", "value": "/tmp"},
        ],
        "resources": resources,
        "securityContext": restricted_container_security(),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *mounts],
    }
    pod = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": restricted_pod_security(config.agent_user_id),
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": config.tmp_size_limit}}, *volumes],
        **pool_scheduling(config, config.agent_pool, None),
    }
    meta = _meta(name, kb, namespace)
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "backoffLimit": BACKOFF_LIMIT,
            "activeDeadlineSeconds": DEADLINE_SECONDS,
            "ttlSecondsAfterFinished": KEEP_FINISHED_SECONDS,
            "template": {"metadata": {"labels": dict(meta["labels"])}, "spec": pod},
        },
    }
    return stamp(job)


def network_policy(kb: KnowledgeBase, namespace: str, config: OperatorConfig) -> JSON:
    """Egress of the KnowledgeBase's Jobs: DNS, the vector store, and URL sources' ports."""
    vector = config.memory.vector if config.memory is not None else None
    assert vector is not None
    rules = [peer_rule(config.dns)]
    rules.append(
        peer_rule(vector.peer) if vector.peer is not None else _anywhere([url_port(vector.url)], [])
    )
    url_ports = sorted({server_port(u) for u in kb.spec.sources.urls})
    if url_ports:
        rules.append(_anywhere(url_ports, config.web_excluded_cidrs))
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(child_name(kb.metadata.name), kb, namespace),
        "spec": {
            "podSelector": {"matchLabels": ingestion_pods(kb.metadata.name)},
            "policyTypes": ["Ingress", "Egress"],  # no ingress rule: nothing gets in
            "egress": rules,
        },
    }
    return stamp(policy)


def render_ingestion(
    kb: KnowledgeBase, namespace: str, config: OperatorConfig, source: str
) -> list[JSON]:
    """The manifest ConfigMap, the NetworkPolicy and the ingestion Job of hash ``source``."""
    name = kb.metadata.name
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(child_name(name), kb, namespace),
        "data": {MANIFEST_KEY: manifest(kb)},
    }
    args = [
        "memory", "sync-knowledgebase", f"{MOUNT}/{MANIFEST_KEY}",
        "--config-maps", CONFIG_MAPS_MOUNT, "--report", TERMINATION_LOG,
    ]  # fmt: skip
    job = _job(kb, namespace, config, job_name(name, source), args)
    job["metadata"]["labels"][SOURCE_HASH_LABEL] = source
    return [stamp(config_map), network_policy(kb, namespace, config), job]


def render_removal(kb: KnowledgeBase, namespace: str, config: OperatorConfig) -> list[JSON]:
    """The NetworkPolicy and the Job deleting the KnowledgeBase's collection."""
    args = ["memory", "delete", "--collection", kb.spec.collection]
    job = _job(kb, namespace, config, removal_job_name(kb.metadata.name), args)
    spec = job["spec"]["template"]["spec"]
    # It reads no source: only /tmp.
    spec["volumes"] = spec["volumes"][:1]
    spec["containers"][0]["volumeMounts"] = spec["containers"][0]["volumeMounts"][:1]
    return [network_policy(kb, namespace, config), stamp(job)]


# --------------------------------------------------------------------------- outcome


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """Where a Job stands: still running, complete, or failed with the Job's reason."""

    done: bool
    failed: bool = False
    reason: str = ""
    message: str = ""


def job_outcome(job: JSON | None) -> Outcome:
    conditions = {c.get("type"): c for c in (job or {}).get("status", {}).get("conditions") or []}
    for kind in ("Failed", "Complete"):
        condition = conditions.get(kind)
        if condition is not None and condition.get("status") == "True":
            return Outcome(
                done=True,
                failed=kind == "Failed",
                reason=str(condition.get("reason") or kind),
                message=str(condition.get("message") or ""),
            )
    return Outcome(done=False)


MESSAGE_LIMIT = 512
REPORT_KEYS = ("documents", "chunks", "added", "unchanged", "removed")


def parse_report(message: str | None) -> dict[str, int] | None:
    """The ingestion's counts from a termination message, or None if it holds none."""
    try:
        report = json.loads(message or "")
    except ValueError:
        return None
    if not isinstance(report, dict) or not all(isinstance(report.get(k), int) for k in REPORT_KEYS):
        return None
    return {k: int(report[k]) for k in REPORT_KEYS}


def pod_report(pods: list[JSON]) -> dict[str, int] | None:
    """The report of the Job's pod that succeeded."""
    for pod in pods:
        if (pod.get("status") or {}).get("phase") != "Succeeded":
            continue
        for status in pod["status"].get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated") or {}
            report = parse_report(terminated.get("message"))
            if report is not None:
                return report
    return None


def pod_failure(pods: list[JSON]) -> str | None:
    """The last line a failed pod of the Job left (its termination message, else its log's)."""
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated") or {}
            lines = str(terminated.get("message") or "").strip().splitlines()
            if terminated.get("exitCode") and lines:
                return lines[-1][:MESSAGE_LIMIT]
    return None
