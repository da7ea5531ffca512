"""The Kubernetes backend: every execution in its own locked-down, single-use pod.

Cold path: one Job per execution (:func:`~agentkube.sandbox.kubernetes.rendering.render_job`); the
request travels in the pod's environment, the result comes back in the container's termination
message, and the Job is deleted (its pod with it) as soon as the result is read. Warm path
(:mod:`agentkube.sandbox.kubernetes.warm_pods`): a pre-created pod is claimed and gets the
request over ``pods/exec`` from the gateway, its result coming straight back (or, where exec is
not allowed, through its annotation and its status); the pod exits after that one execution and
is deleted, and the pool makes a new one.

Nothing outlives an execution: the gateway deletes what it made; ``ttlSecondsAfterFinished`` and
``activeDeadlineSeconds`` bound what a crashed gateway leaves; and :meth:`KubernetesSandbox.start`
sweeps everything labelled with this gateway's name from an earlier run (one gateway name is one
replica; run several names to scale out). The sandbox pods never get API credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import httpx2  # lightkube's HTTP client (a fork of httpx): its errors are not httpx's
from lightkube import ApiError, AsyncClient
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Event, Pod
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.types import CascadeType

from agentkube.api.pod_contract import GATEWAY_FIELD_MANAGER
from agentkube.background import BackgroundTasks
from agentkube.kube_errors import classify
from agentkube.sandbox.contract import ExecutionRequest, ExecutionResult, Limits
from agentkube.sandbox.errors import SandboxFailure, SandboxRequestError, SandboxUnavailable
from agentkube.sandbox.kubernetes.pod_events import PodEvents
from agentkube.sandbox.kubernetes.pod_exec import PodExec
from agentkube.sandbox.kubernetes.pod_runner import LOG_MARKER
from agentkube.sandbox.kubernetes.rendering import (
    CONTAINER,
    EXECUTION_LABEL,
    GATEWAY_LABEL,
    JSON,
    MAX_PAYLOAD_BYTES,
    RUNTIME_CLASS_AUTO,
    PodSettings,
    deny_all_network_policy,
    job_deadline_exceeded,
    payload,
    pod_finished,
    render_job,
    result_from_pod,
    result_in_log,
    timeout_result,
)
from agentkube.sandbox.kubernetes.runtime_class import choose_runtime_class
from agentkube.sandbox.kubernetes.warm_pods import Claim, ClaimLost, WarmPodPool
from agentkube.sandbox.policy import DEFAULT_POLICY, SandboxPolicy

log = logging.getLogger(__name__)
POLL_S = 1.0
# A Job with no pod after this long: ask whether the API server refused its pod (admission, a
# missing RuntimeClass, a quota) instead of waiting for the deadline.
REFUSAL_CHECK_AFTER_S = 1.0


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


class KubernetesSandbox:
    """Runs requests as Jobs (or claimed warm pods) in ``settings.namespace``."""

    def __init__(
        self,
        client: AsyncClient,
        settings: PodSettings | None = None,
        *,
        warm_pool: int = 0,
        warm_limits: Limits | None = None,
        policy: SandboxPolicy = DEFAULT_POLICY,
        pod_exec: PodExec | bool | None = True,
        pod_attach: bool = True,
    ) -> None:
        """``pod_exec``: how warm pods get their requests over ``pods/attach`` or ``pods/exec``
        (True: with the client's own connection and credentials; False: never, by annotation
        only); ``pod_attach``: False hands them over by exec only."""
        self.settings = settings or PodSettings()
        self.policy = policy
        warm_limits = policy.check_limits(warm_limits or Limits()) if warm_pool else Limits()
        self._client = client
        self._events = PodEvents(
            client, namespace=self.settings.namespace, gateway=self.settings.gateway
        )
        self.warm_hits = self.warm_misses = 0  # executions a warm pod took, or not
        handover = pod_exec if isinstance(pod_exec, PodExec) else None
        if pod_exec is True and warm_pool:
            handover = PodExec.of(client)
        self._warm = (
            WarmPodPool(
                client,
                self._events,
                self.settings,
                warm_pool,
                warm_limits,
                pod_exec=handover,
                attach=pod_attach,
            )
            if warm_pool
            else None
        )
        self._cleanups = BackgroundTasks()
        self._started = False
        self._starting: asyncio.Task[None] | None = None

    @property
    def warm(self) -> WarmPodPool | None:
        return self._warm

    async def start(self) -> None:
        """Apply the deny-all NetworkPolicy, sweep leftovers, watch pods, fill the warm pool.

        Fails closed: the backend counts as started only once the NetworkPolicy and the pod
        watch are in place, so a failed start runs nothing and the next call tries again.
        Concurrent first calls share one start.
        """
        if self._started:
            return
        if self._starting is None:
            self._starting = asyncio.get_running_loop().create_task(self._start())
        starting = self._starting
        try:
            await asyncio.shield(starting)
        except BaseException:
            if starting.done() and self._starting is starting:
                self._starting = None  # a failed start is tried again by the next caller
            raise

    async def _start(self) -> None:
        if self.settings.runtime_class_name == RUNTIME_CLASS_AUTO:
            chosen = await choose_runtime_class(self._client, RUNTIME_CLASS_AUTO)
            self.settings = dataclasses.replace(self.settings, runtime_class_name=chosen)
            if self._warm is not None:
                self._warm.settings = self.settings
        async with _translated(f"prepare namespace {self.settings.namespace}"):
            policy: Any = NetworkPolicy.from_dict(deny_all_network_policy(self.settings))
            await self._client.apply(
                policy,
                field_manager=GATEWAY_FIELD_MANAGER,
                force=True,
            )
            await self.sweep()
        self._events.start()
        self._started = True
        if self._warm is not None:
            await self._warm.start()

    async def sweep(self) -> None:
        """Delete every Job and pod this gateway name made before the sweep began (left by an
        earlier run); nothing created after that moment is touched."""
        labels: Any = {GATEWAY_LABEL: self.settings.gateway}
        ns = self.settings.namespace
        began = datetime.now(UTC)
        async for job in self._client.list(Job, namespace=ns, labels=labels):
            if _created_before(job.metadata, began):
                assert job.metadata is not None and job.metadata.name is not None
                log.info("sweeping leftover sandbox Job %s/%s", ns, job.metadata.name)
                await self._delete(Job, job.metadata.name)
        async for pod in self._client.list(Pod, namespace=ns, labels=labels):
            meta = pod.metadata
            if _created_before(meta, began) and not (meta and meta.deletionTimestamp):
                assert meta is not None and meta.name is not None
                log.info("sweeping leftover sandbox pod %s/%s", ns, meta.name)
                await self._delete(Pod, meta.name)

    async def execute(self, request: ExecutionRequest) -> ExecutionResult:
        self.policy.check(request)  # pods are rendered only from checked limits
        size = len(payload(request).encode())
        if size > MAX_PAYLOAD_BYTES:
            raise SandboxRequestError(
                f"the request is {size} bytes; the kubernetes sandbox takes code, files and "
                f"environment up to {MAX_PAYLOAD_BYTES} bytes in all"
            )
        await self.start()
        if self._warm is not None:
            while (claim := await self._warm.claim(request)) is not None:
                try:
                    result = await self._run_warm(self._warm, claim, request)
                except ClaimLost:
                    continue  # nothing reached that pod: claim another
                except BaseException:
                    self.warm_hits += 1
                    raise
                self.warm_hits += 1
                return result
            self.warm_misses += 1
        return await self._run_job(request)

    async def _run_warm(
        self, warm: WarmPodPool, claim: Claim, request: ExecutionRequest
    ) -> ExecutionResult:
        """Hand the request to the claimed pod by exec, or read its result from the pod."""
        if claim.by_exec:
            try:
                result = await warm.hand_over(claim, request, self._result_bytes())
            except ClaimLost:
                raise
            except BaseException:
                self._events.forget(claim.name)
                self._clean_up_later(Pod, claim.name)
                raise
            if result is not None and not _maybe_oom_killed(result):
                self._events.forget(claim.name)
                self._clean_up_later(Pod, claim.name)
                return result
            if result is None:
                await warm.write_request(claim.name, request)
            # A SIGKILL the runner did not send: the pod's status says whether it was the OOM
            # killer (its result is in the termination message too).
        return await self._await_pod(claim.name, request, job=False)

    def _result_bytes(self) -> int:
        """The most a whole result may take (stdout, stderr and files at the policy's output
        cap, each JSON-escaped up to six times its size, and room for the rest)."""
        return 3 * 6 * self.policy.max_output_bytes + (1 << 20)

    def warm_count(self) -> int:
        """How many warm pods are ready to be claimed."""
        return self._warm.ready if self._warm is not None else 0

    async def _run_job(self, request: ExecutionRequest) -> ExecutionResult:
        name = f"sbx-{secrets.token_hex(6)}"
        job = render_job(name, request, self.settings)
        self._events.expect(name)
        try:
            async with _translated(f"create sandbox Job {self.settings.namespace}/{name}"):
                obj: Any = Job.from_dict(job)
                await self._client.create(obj, field_manager=GATEWAY_FIELD_MANAGER)
        except BaseException:
            self._events.forget(name)
            raise
        return await self._await_pod(name, request, job=True)

    async def _await_pod(
        self, name: str, request: ExecutionRequest, *, job: bool
    ) -> ExecutionResult:
        started = time.perf_counter()
        give_up = started + request.limits.timeout_s + self.settings.startup_grace_s + 30
        try:
            result = await self._wait(name, job=job, started=started, give_up=give_up)
        finally:
            self._events.forget(name)
            self._clean_up_later(Job if job else Pod, name)
        return result

    async def _wait(
        self, name: str, *, job: bool, started: float, give_up: float
    ) -> ExecutionResult:
        queue = self._events.expect(name)
        pod: JSON | None
        while True:
            try:
                pod, deleted = await asyncio.wait_for(queue.get(), POLL_S)
            except TimeoutError:
                pod, deleted = await self._poll(name), False
                if pod is None and not job:
                    raise SandboxFailure(
                        f"sandbox pod {name} disappeared before it finished"
                    ) from None
                if pod is None and job and time.perf_counter() - started > REFUSAL_CHECK_AFTER_S:
                    refusal = await self._pod_refused(name)
                    if refusal:
                        raise SandboxUnavailable(
                            f"sandbox Job {self.settings.namespace}/{name} cannot create its "
                            f"pod: {refusal}"
                        ) from None
            if pod is not None and pod_finished(pod):
                log_line = await self._last_log_line(pod) if result_in_log(pod) else None
                return result_from_pod(pod, _elapsed_ms(started), log_line)
            if (deleted or pod is None or _deleting(pod)) and job and await self._deadline(name):
                return timeout_result(_elapsed_ms(started))
            if deleted and not job:
                raise SandboxFailure(f"sandbox pod {name} was deleted before it finished")
            if time.perf_counter() > give_up:
                raise SandboxFailure(f"sandbox execution {name} did not finish in time")

    async def _poll(self, name: str) -> JSON | None:
        async with _translated(f"read sandbox pod of {name}"):
            selector: Any = {EXECUTION_LABEL: name}
            async for pod in self._client.list(
                Pod, namespace=self.settings.namespace, labels=selector
            ):
                return dict(pod.to_dict())
        return None

    async def _last_log_line(self, pod: JSON) -> str | None:
        """The runner's whole result from a finished sandbox pod's log: its last line that
        starts with the result marker.

        Read before the pod is deleted, from the start: the container's stdout holds only the
        runner's own lines (the code's output goes to the runner's pipes), and ``tailLines``
        cannot be used because container runtimes store a long line as 16 KiB partial records,
        which the kubelet counts as lines. At most what the policy's largest result can take is
        read (stdout, stderr and files at the output cap, each JSON-escaped up to six times its
        size); past that the message's cut copy stays the result.
        """
        name = pod["metadata"]["name"]
        most = self._result_bytes()
        found, read = None, 0
        try:
            async for line in self._client.log(
                name, namespace=self.settings.namespace, container=CONTAINER, newlines=False
            ):
                read += len(line)
                if read > most:
                    log.warning("the log of sandbox pod %s exceeds %d bytes", name, most)
                    return None
                if line.startswith(LOG_MARKER):
                    found = line
        except (ApiError, httpx2.HTTPError) as e:  # the message's cut copy is still a result
            log.warning("could not read the log of sandbox pod %s (output stays cut): %s", name, e)
            return None
        return found

    async def _pod_refused(self, name: str) -> str | None:
        """The job controller's ``FailedCreate`` message for Job ``name``, if it has one."""
        fields: Any = {
            "involvedObject.kind": "Job",
            "involvedObject.name": name,
            "reason": "FailedCreate",
        }
        message = None
        try:
            async for event in self._client.list(
                Event, namespace=self.settings.namespace, fields=fields
            ):
                message = event.message or message
        except (ApiError, httpx2.HTTPError) as e:  # only a faster answer is lost: keep waiting
            log.warning("could not read the events of sandbox Job %s: %s", name, e)
        return message

    async def _deadline(self, name: str) -> bool:
        try:
            job = await self._client.get(Job, name, namespace=self.settings.namespace)
        except ApiError:
            return False
        return job_deadline_exceeded(job.to_dict())

    def _clean_up_later(self, kind: type[Job] | type[Pod], name: str) -> None:
        self._cleanups.spawn(self._delete(kind, name))

    async def _delete(self, kind: type[Job] | type[Pod], name: str) -> None:
        try:
            await self._client.delete(
                kind, name, namespace=self.settings.namespace, cascade=CascadeType.BACKGROUND
            )
        except ApiError as e:
            if e.status.code != 404:
                log.warning("could not delete sandbox %s %s: %s", kind.__name__, name, e)
        except httpx2.HTTPError as e:
            log.warning("could not delete sandbox %s %s: %r", kind.__name__, name, e)

    async def aclose(self) -> None:
        """Stop watching, stop the warm pool, delete what is left."""
        # The watch goes first: a watch started a moment ago may still be connecting, and it
        # should be cancelled before it opens a connection, not during its TLS handshake (which
        # on Python 3.11 leaves the socket unclosed). Nothing waits on pod events any more.
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
            with contextlib.suppress(BaseException):
                await self._starting
        await self._events.aclose()
        if self._warm is not None:
            await self._warm.aclose()
        await self._cleanups.wait()
        if self._started:
            with contextlib.suppress(ApiError, httpx2.HTTPError):
                await self.sweep()


def _created_before(meta: Any, moment: datetime) -> bool:
    """Whether an object (its ObjectMeta) has a name and was created before ``moment``."""
    if meta is None or not meta.name:
        return False
    created = meta.creationTimestamp
    return created is None or created < moment


def _maybe_oom_killed(result: ExecutionResult) -> bool:
    """Whether the code died of a SIGKILL the runner did not send (137): the OOM killer's, as
    far as the runner can tell, which only the container's status says for sure."""
    return result.exit_code == 137 and result.killed_reason is None


def _deleting(pod: JSON) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


@contextlib.asynccontextmanager
async def _translated(action: str) -> Any:
    try:
        yield
    except Exception as e:
        failure = classify(e)
        if failure is None:
            raise
        if failure.kind == "forbidden":
            raise SandboxUnavailable(
                f"{action}: the gateway's ServiceAccount lacks the rights "
                f"(deploy/gateway/rbac.yaml): {failure.detail}"
            ) from e
        if failure.unavailable:
            raise SandboxUnavailable(f"{action}: {failure.detail}") from e
        if failure.kind == "invalid":
            raise SandboxFailure(f"{action}: the API server rejected it: {failure.detail}") from e
        raise SandboxFailure(f"{action}: {failure.detail}") from e
