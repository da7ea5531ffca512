"""A stand-in kubelet for one Job pod: runs its container's command here (test helper).

kwok runs no containers (and completes every Job pod at once, without running anything), so
the KnowledgeBase tests keep the ingestion Job's pods off kwok's nodes (their pool selects no
node) and play the kubelet for them with this: for a pod of the Job,

* the kubelet's volume work: each ``configMap`` volume becomes a folder of files (its ``items``,
  else every key) read from the API server, each ``emptyDir`` an empty folder, all at their
  mount paths under a folder standing for the container's filesystem, onto which the paths in
  the command's arguments and environment are mapped; the termination-message path becomes a
  file here;
* the container's ``args`` run with the project's ``agentkube`` (the image's entrypoint), with
  the container's environment (``fieldRef: metadata.namespace`` resolved);
* the pod status the kubelet would write (through the status subresource): ``terminated`` with
  the exit code, ``Completed`` or ``Error``, and the termination message (cut at 4096 bytes,
  falling back to the log's tail on error as ``FallbackToLogsOnError`` does); phase Succeeded or
  Failed.

The Job controller of the real control plane then completes (or retries, or fails) the Job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.plugins.testcluster import Cluster

AGENTKUBE = Path(sys.executable).parent / "agentkube"
MESSAGE_LIMIT = 4096
JSON = dict[str, Any]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _filesystem(cluster: Cluster, pod: JSON, container: JSON, fs: Path) -> None:
    """Each volume's files at its mount path under ``fs`` (nested mounts nest, as in a pod)."""
    namespace = pod["metadata"]["namespace"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    for mount in sorted(container["volumeMounts"], key=lambda m: len(m["mountPath"])):
        folder = fs / mount["mountPath"].lstrip("/")
        folder.mkdir(parents=True, exist_ok=True)
        source = volumes[mount["name"]].get("configMap")
        if source is None:
            continue  # an emptyDir
        config_map = cluster.kubectl_json("get", "configmap", source["name"], "-n", namespace)
        data = config_map.get("data") or {}
        items = source.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            (folder / item["path"]).write_text(data[item["key"]])


def _mapper(container: JSON, fs: Path, termination: Path) -> Any:
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    termination_path = container.get("terminationMessagePath", "/dev/termination-log")

    def mapped(value: str) -> str:
        if value == termination_path:
            return str(termination)
        if any(value == path or value.startswith(path + "/") for path in mounts):
            return str(fs / value.lstrip("/"))
        return value

    return mapped


def _env(container: JSON, pod: JSON, mapped: Any) -> dict[str, str]:
    env = {"PATH": os.environ["PATH"]}
    for variable in container.get("env") or []:
        if "value" in variable:
            env[variable["name"]] = mapped(variable["value"])
        elif variable.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == (
            "metadata.namespace"
        ):
            env[variable["name"]] = pod["metadata"]["namespace"]
    return env


def run_pod(cluster: Cluster, pod: JSON, root: Path) -> subprocess.CompletedProcess[str]:
    """Run ``pod``'s single container to its end here and write its status as a kubelet."""
    (container,) = pod["spec"]["containers"]
    root.mkdir(parents=True)
    fs = root / "fs"
    _filesystem(cluster, pod, container, fs)
    termination = root / "termination-log"
    termination.touch()
    mapped = _mapper(container, fs, termination)
    started = _now()
    argv = [str(AGENTKUBE), *(mapped(a) for a in container.get("args") or [])]
    result = subprocess.run(
        argv, env=_env(container, pod, mapped), capture_output=True, text=True, timeout=300
    )
    message = termination.read_text()
    if not message and result.returncode != 0:  # FallbackToLogsOnError
        message = (result.stdout + result.stderr)[-MESSAGE_LIMIT:]
    terminated = {
        "exitCode": result.returncode,
        "reason": "Completed" if result.returncode == 0 else "Error",
        "message": message[:MESSAGE_LIMIT],
        "startedAt": started,
        "finishedAt": _now(),
    }
    status = {
        "phase": "Succeeded" if result.returncode == 0 else "Failed",
        "startTime": started,
        "containerStatuses": [
            {
                "name": container["name"],
                "image": container["image"],
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "started": False,
                "state": {"terminated": terminated},
            }
        ],
    }
    meta = pod["metadata"]
    cluster.kubectl(
        "patch", "pod", meta["name"], "-n", meta["namespace"], "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": status}),
    )  # fmt: skip
    return result
