"""A stand-in kubelet for sandbox pods: kwok does not run containers, this does (test helper).

It registers its own Node (kwok leaves nodes without kwok's annotation alone), keeps the node's
Lease fresh as a kubelet does, and for every pod the reconcile queue binds to it:

* marks the pod Running, as a kubelet does once its containers started;
* runs the container's command (``command + args``, with the container's environment) in the
  real local sandbox (bubblewrap + cgroups), with the pod's CPU and memory limits, its emptyDir
  size as the scratch size and its ``activeDeadlineSeconds`` as the deadline;
* plays the kubelet's volume work for the two things sandbox pods use: a downward-API volume of
  an annotation becomes a file (and the pod's command waits until the annotation exists, like a
  runner polling a file the kubelet fills in on its next sync), and the termination-message file
  is mapped to the local sandbox's ``out/`` folder (``AGENTKUBE_TERMINATION_LOG``) and copied into
  the container status, cut at 4096 bytes as the kubelet does;
* writes the pod status a kubelet would: ``terminated`` with the exit code and ``Completed``,
  ``Error`` or ``OOMKilled``; phase Succeeded/Failed; ``DeadlineExceeded`` when the pod's deadline
  killed it;
* serves the container's log (its stdout, then stderr) on the kubelet's HTTPS endpoint,
  ``/containerLogs/<namespace>/<pod>/<container>`` with ``tailLines`` and ``limitBytes``, which
  the API server proxies for ``pods/log``; the node advertises the port in
  ``status.daemonEndpoints``, and the serving certificate is one the test API server trusts
  (signed by the cluster CA, ``--kubelet-certificate-authority``);
* kills the container when the pod is being deleted and then removes the pod (grace 0), which is
  the kubelet's part of graceful deletion.

Everything else (Jobs, deadlines of Jobs, TTL, garbage collection, scheduling, admission) is the
real control plane's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Node, Pod
from lightkube.types import PatchType
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from agentkube.api.quantity import parse_bytes, parse_cpu
from agentkube.sandbox.contract import ExecutionRequest, ExecutionResult, Limits
from agentkube.sandbox.kubernetes.pod_events import watch_pods
from tests.standins.serving import serve

log = logging.getLogger(__name__)
TERMINATION_FILE = "termination-log"
MESSAGE_LIMIT = 4096
LEASE_EVERY_S = 5.0
LOG_BYTES = 16 << 20


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Running:
    task: asyncio.Task[None] | None = None
    annotated: asyncio.Event = field(default_factory=asyncio.Event)
    pod: dict[str, Any] = field(default_factory=dict)


class SandboxKubelet:
    """Plays the kubelet of node ``node_name``, running its pods in a LocalSandbox."""

    def __init__(
        self,
        kubeconfig: Path,
        node_name: str,
        labels: dict[str, str],
        taints: list[dict[str, str]],
        *,
        warm_sandboxes: int = 0,
    ) -> None:
        self.node_name = node_name
        self.labels = labels
        self.taints = taints
        self._kubeconfig = kubeconfig
        self._warm_sandboxes = warm_sandboxes
        self._pods: dict[str, _Running] = {}
        self._logs: dict[str, str] = {}  # "<namespace>/<pod>" -> the container's output
        self.log_port = 0  # where log_app() is served; set before run()
        self._background: set[asyncio.Task[None]] = set()
        self.pods_run = 0
        self.ready = threading.Event()

    # -- node -------------------------------------------------------------------------------

    async def _register(self, client: AsyncClient) -> None:
        node: Any = Node.from_dict(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": self.node_name,
                    "labels": {
                        "kubernetes.io/hostname": self.node_name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        **self.labels,
                    },
                },
                "spec": {"taints": self.taints},
                "status": {
                    "capacity": {"cpu": "8", "memory": "16Gi", "pods": "110"},
                    "allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"},
                },
            }
        )
        with contextlib.suppress(ApiError):
            await client.create(node)
        await self._heartbeat(client)

    async def _heartbeat(self, client: AsyncClient) -> None:
        now = _now()
        status = {
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "sandbox kubelet stand-in is posting ready status",
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    }
                ],
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": self.log_port}},
            }
        }
        await client.patch(Node.Status, self.node_name, status, patch_type=PatchType.MERGE)
        renew = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        lease: Any = Lease.from_dict(
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.node_name, "namespace": "kube-node-lease"},
                "spec": {
                    "holderIdentity": self.node_name,
                    "leaseDurationSeconds": 40,
                    "renewTime": renew,
                },
            }
        )
        await client.apply(lease, field_manager="sandbox-kubelet", force=True)

    async def _keep_alive(self, client: AsyncClient) -> None:
        while True:
            await asyncio.sleep(LEASE_EVERY_S)
            try:
                await self._heartbeat(client)
            except Exception:
                log.exception("sandbox kubelet: heartbeat failed")

    # -- logs (the kubelet's HTTPS endpoint) --------------------------------------------------

    async def _container_log(self, request: Request) -> PlainTextResponse:
        params = request.path_params
        text = self._logs.get(f"{params['namespace']}/{params['pod']}")
        if text is None:
            return PlainTextResponse("no such container log\n", status_code=404)
        tail = request.query_params.get("tailLines")
        if tail is not None:
            text = "".join(text.splitlines(keepends=True)[-int(tail) :] if int(tail) else [])
        limit = request.query_params.get("limitBytes")
        if limit is not None:
            text = text.encode()[: int(limit)].decode("utf-8", "ignore")
        return PlainTextResponse(text)

    def log_app(self) -> Starlette:
        """The kubelet's HTTPS endpoint, as far as the API server's ``pods/log`` needs it."""
        route = Route("/containerLogs/{namespace}/{pod}/{container}", self._container_log)
        return Starlette(routes=[route])

    # -- pods -------------------------------------------------------------------------------

    async def run(self) -> None:
        from agentkube.sandbox.local import LocalSandbox
        from agentkube.sandbox.policy import SandboxPolicy

        client = AsyncClient(config=KubeConfig.from_file(self._kubeconfig))
        # A kubelet runs whatever its pod spec says: the gateway's policy was applied before the
        # pod was rendered, so the stand-in sets no maximum of its own.
        anything = SandboxPolicy(
            max_cpu=64,
            max_memory_bytes=2**40,
            max_pids=4096,
            max_timeout_s=3600,
            max_output_bytes=2**30,
            max_scratch_bytes=2**40,
            max_input_file_bytes=2**30,
        )
        sandbox = LocalSandbox(pool_size=self._warm_sandboxes, policy=anything)
        await sandbox.start()
        await self._register(client)
        alive = asyncio.create_task(self._keep_alive(client))
        self.ready.set()
        try:
            # Like a real kubelet, keep going across API server restarts (the operator tests
            # restart it while this session-wide node is up).
            events = watch_pods(client, namespace="*", fields={"spec.nodeName": self.node_name})
            async with contextlib.aclosing(events):
                async for kind, pod in events:
                    self._on_pod(client, sandbox, pod, deleted=kind == "DELETED")
        finally:
            alive.cancel()
            for running in self._pods.values():
                if running.task is not None:
                    running.task.cancel()
            await sandbox.aclose()
            await client.close()

    def _on_pod(
        self, client: AsyncClient, sandbox: Any, pod: dict[str, Any], *, deleted: bool
    ) -> None:
        meta = pod["metadata"]
        key = f"{meta['namespace']}/{meta['name']}/{meta['uid']}"
        running = self._pods.get(key)
        if deleted:
            if running is not None and running.task is not None:
                running.task.cancel()
            self._pods.pop(key, None)
            self._logs.pop(f"{meta['namespace']}/{meta['name']}", None)
            return
        if meta.get("deletionTimestamp"):
            if running is not None and running.task is not None:
                running.task.cancel()
            removal = asyncio.create_task(self._remove(client, meta["namespace"], meta["name"]))
            self._background.add(removal)
            removal.add_done_callback(self._background.discard)
            return
        if running is None:
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                return
            running = self._pods[key] = _Running(pod=pod)
            running.task = asyncio.create_task(self._run_pod(client, sandbox, running))
        running.pod = pod
        if meta.get("annotations") or {}:
            running.annotated.set()

    async def _remove(self, client: AsyncClient, namespace: str, name: str) -> None:
        with contextlib.suppress(ApiError):
            await client.delete(Pod, name, namespace=namespace, grace_period=0)

    async def _run_pod(self, client: AsyncClient, sandbox: Any, running: _Running) -> None:
        pod = running.pod
        meta = pod["metadata"]
        try:
            started = await self._mark_running(client, pod)
            request = await self._request(running)
            deadline = pod["spec"].get("activeDeadlineSeconds")
            self.pods_run += 1
            result = await sandbox.execute(request)
            self._logs[f"{meta['namespace']}/{meta['name']}"] = result.stdout + result.stderr
            deadline = running.pod["spec"].get("activeDeadlineSeconds")
            await self._finish(client, running.pod, result, started, deadline is not None)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("sandbox kubelet: pod %s/%s failed", meta["namespace"], meta["name"])

    async def _mark_running(self, client: AsyncClient, pod: dict[str, Any]) -> str:
        now = _now()
        container = pod["spec"]["containers"][0]["name"]
        conditions = [
            {"type": t, "status": "True", "lastTransitionTime": now}
            for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
        ]
        status = {
            "status": {
                "phase": "Running",
                "startTime": now,
                "hostIP": "127.0.0.1",
                "podIP": "10.244.99.1",
                "conditions": conditions,
                "containerStatuses": [
                    {
                        "name": container,
                        "ready": True,
                        "restartCount": 0,
                        "image": pod["spec"]["containers"][0]["image"],
                        "imageID": "",
                        "started": True,
                        "state": {"running": {"startedAt": now}},
                    }
                ],
            }
        }
        meta = pod["metadata"]
        await client.patch(
            Pod.Status,
            meta["name"],
            status,
            namespace=meta["namespace"],
            patch_type=PatchType.MERGE,
        )
        return now

    async def _request(self, running: _Running) -> ExecutionRequest:
        """What the container would run, as a local-sandbox request (volumes mapped to files)."""
        spec = running.pod["spec"]
        container = spec["containers"][0]
        mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts") or []}
        downward = [v for v in spec.get("volumes") or [] if v.get("downwardAPI")]
        if downward:
            await running.annotated.wait()  # the runner waits for the file the kubelet fills
        files: dict[str, str] = {}
        paths: dict[str, str] = {}
        for volume in downward:
            where = f".kubelet/{volume['name']}"
            if volume["name"] in mounts:
                paths[mounts[volume["name"]]] = where
            annotations = running.pod["metadata"].get("annotations") or {}
            for item in volume["downwardAPI"]["items"]:
                field_path = item["fieldRef"]["fieldPath"]
                key = field_path.split("['", 1)[1].rstrip("']") if "['" in field_path else ""
                files[f"{where}/{item['path']}"] = annotations.get(key, "")
        env = {e["name"]: e.get("value", "") for e in container.get("env") or []}
        for name, value in env.items():
            for mount_path, local in paths.items():
                if value.startswith(mount_path.rstrip("/") + "/"):
                    env[name] = local + value[len(mount_path.rstrip("/")) :]
        env["AGENTKUBE_TERMINATION_LOG"] = f"out/{TERMINATION_FILE}"
        # Every container gets the `kubernetes` Service's address from its kubelet; here it is
        # loopback of the local sandbox's own network namespace, which nothing answers.
        env.setdefault("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        env.setdefault("KUBERNETES_SERVICE_PORT", "443")
        argv = [*(container.get("command") or []), *(container.get("args") or [])]
        return ExecutionRequest(
            language="bash", code=shlex.join(argv), env=env, files=files, limits=self._limits(spec)
        )

    def _limits(self, spec: dict[str, Any]) -> Limits:
        limits = (spec["containers"][0].get("resources") or {}).get("limits") or {}
        scratch = next(
            (
                v["emptyDir"].get("sizeLimit")
                for v in spec.get("volumes") or []
                if v.get("emptyDir")
            ),
            None,
        )
        deadline = spec.get("activeDeadlineSeconds")
        # A container's log is not capped as a sandbox's output is: keep the runner's whole
        # result line (up to three 1 MiB parts, JSON-escaped).
        values: dict[str, Any] = {
            "timeout_s": float(deadline) if deadline else 600.0,
            "output_bytes": LOG_BYTES,
        }
        if "cpu" in limits:
            values["cpu"] = parse_cpu(limits["cpu"])
        if "memory" in limits:
            values["memory_bytes"] = parse_bytes(limits["memory"])
        if scratch:
            values["scratch_bytes"] = parse_bytes(scratch)
        return Limits(**values)

    async def _finish(
        self,
        client: AsyncClient,
        pod: dict[str, Any],
        result: ExecutionResult,
        started: str,
        has_deadline: bool,
    ) -> None:
        message = (
            result.files.get(TERMINATION_FILE, "")
            .encode()[:MESSAGE_LIMIT]
            .decode("utf-8", "ignore")
        )
        status: dict[str, Any] = {}
        if result.killed_reason == "timeout" and has_deadline:
            terminated = {"exitCode": 137, "reason": "Error", "message": message}
            status = {
                "phase": "Failed",
                "reason": "DeadlineExceeded",
                "message": "Pod was active on the node longer than the specified deadline",
            }
        elif result.killed_reason == "memory":
            terminated = {"exitCode": 137, "reason": "OOMKilled", "message": message}
            status = {"phase": "Failed"}
        else:
            code = result.exit_code if result.exit_code is not None else 137
            terminated = {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "message": message,
            }
            status = {"phase": "Succeeded" if code == 0 else "Failed"}
        terminated.update(startedAt=started, finishedAt=_now())
        container = pod["spec"]["containers"][0]
        status["containerStatuses"] = [
            {
                "name": container["name"],
                "ready": False,
                "restartCount": 0,
                "started": False,
                "image": container["image"],
                "imageID": "",
                "state": {"terminated": terminated},
            }
        ]
        status["conditions"] = [
            {"type": t, "status": "False", "reason": "PodCompleted", "lastTransitionTime": _now()}
            for t in ("ContainersReady", "Ready")
        ]
        meta = pod["metadata"]
        await client.patch(
            Pod.Status,
            meta["name"],
            {"status": status},
            namespace=meta["namespace"],
            patch_type=PatchType.MERGE,
        )


@contextlib.contextmanager
def running_sandbox_kubelet(
    kubeconfig: Path,
    node_name: str,
    labels: dict[str, str],
    taints: list[dict[str, str]],
    serving_cert: tuple[Path, Path],
    *,
    warm_sandboxes: int = 0,
) -> Iterator[SandboxKubelet]:
    """Run the stand-in in a background thread (its own event loop) until the block ends; its
    log endpoint is served over HTTPS with ``serving_cert`` (certificate, key)."""
    kubelet = SandboxKubelet(kubeconfig, node_name, labels, taints, warm_sandboxes=warm_sandboxes)
    with serve(kubelet.log_app(), tls=serving_cert) as url:
        kubelet.log_port = urlsplit(url).port or 0
        with _running(kubelet):
            yield kubelet


@contextlib.contextmanager
def _running(kubelet: SandboxKubelet) -> Iterator[None]:
    loop = asyncio.new_event_loop()
    task: asyncio.Future[None] | None = None
    failure: list[BaseException] = []

    def main() -> None:
        nonlocal task
        asyncio.set_event_loop(loop)
        task = loop.create_task(kubelet.run())
        try:
            loop.run_until_complete(task)
        except asyncio.CancelledError:
            pass
        except BaseException as e:
            failure.append(e)
            kubelet.ready.set()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=main, name="sandbox-kubelet", daemon=True)
    thread.start()
    if not kubelet.ready.wait(60) or failure:
        raise RuntimeError(f"the sandbox kubelet stand-in did not start: {failure!r}")
    try:
        yield
    finally:
        if not loop.is_closed():
            loop.call_soon_threadsafe(lambda: task.cancel() if task else None)
        thread.join(timeout=30)
        if failure:
            raise RuntimeError(f"the sandbox kubelet stand-in stopped early: {failure[0]!r}")
