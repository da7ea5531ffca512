"""The warm pool: pre-created, single-use sandbox pods waiting for one request each.

A warm pod runs the pod runner, already started (Python loaded, and the code's interpreter
started too), waiting for its request. The gateway claims a pod with one merge patch that
relabels it ``claimed`` and sets its ``activeDeadlineSeconds`` to the request's timeout from
now, and hands the request over:

- **by attach** (the fast path): ``pods/attach`` to the runner's stdin; the request goes in as
  one line, the result comes back on the container's stdout as one line
  (:mod:`~agentkube.sandbox.kubernetes.pod_exec`). Nothing is started in the pod for it. The
  attach is opened as soon as the pod is Running and held while it waits
  (:class:`~agentkube.sandbox.kubernetes.pod_exec.HeldAttach`), so a claim pays neither the
  connection nor the attach's set-up in the API server, kubelet and runtime; one that closed
  while held leaves the request to exec.
- **by exec** (where attach is refused, 403: one log line): ``pods/exec`` runs a fixed
  ``sh``/``head``/``cat`` command in the pod's container that writes the request into the
  runner's FIFO and streams the result back (``pod_runner.Handover``).

Neither waits for a kubelet loop: not the volume sync, not the container's exit (PLEG), not a
status write. The claim's patch is sent while the attach's or exec's connection opens, and the
request goes in only once the patch's answer shows the pod labelled with this gateway's name
and ``claimed``; otherwise the connection gets an empty line (the runner ignores it and waits
on) and, if the patch failed, another pod is claimed (:class:`ClaimLost`).

- **by annotation** (the fallback): the request goes into the pod's
  ``agentkube.openvn/sandbox-request`` annotation, which a downward-API volume shows to the
  runner once the kubelet syncs the pod's volumes (about a second on a real node); the result
  comes from the pod's status. Used when exec is not allowed either (403: the pool stops
  trying, with one log line), or when a handover did not bring a result back (then the result
  is still read from the pod, whichever way the request reached it: the runner takes only one).

The pod still has no API access and no network either way. After serving one request the pod
exits and is deleted; the pool creates a replacement at once. Only requests whose CPU, memory
and scratch limits equal the pool's fit a warm pod (a pod's resources are fixed when it is
made); any other request takes the cold Job path.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx2  # lightkube's HTTP client (a fork of httpx): its errors are not httpx's
from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from agentkube.api.pod_contract import GATEWAY_FIELD_MANAGER
from agentkube.sandbox.contract import ExecutionRequest, ExecutionResult, Limits
from agentkube.sandbox.kubernetes.pod_events import PodEvents
from agentkube.sandbox.kubernetes.pod_exec import ExecError, ExecOutput, HeldAttach, PodExec
from agentkube.sandbox.kubernetes.pod_runner import HANDOVER_ABORT, LOG_MARKER
from agentkube.sandbox.kubernetes.rendering import (
    CONTAINER,
    GATEWAY_LABEL,
    JSON,
    REQUEST_ANNOTATION,
    WARM_LABEL,
    PodSettings,
    handover_command,
    handover_line,
    payload,
    render_warm_pod,
    result_from_json,
)

log = logging.getLogger(__name__)
CLAIM_GRACE_S = 10
# The handover's own time on top of the request's timeout: the runner's start if the pod is new
# (the command waits about 10 s for it), the exec's connection, the result's way back.
HANDOVER_GRACE_S = 15
EXEC_FAILURES_TOLERATED = 3  # handovers in a row that reached no runner before the pool stops
NO_RUNNER_EXITS = (3, 4)  # the handover command's: no runner came up; it has no FIFOs


# What a claim's patch found (Claim.confirmed).
OURS = "ours"  # the answer shows the pod labelled with this gateway's name and ``claimed``
NOT_OURS = "not ours"  # the patch went through, the answer shows other labels: no exec
LOST = "lost"  # the patch failed (the pod is gone, the API server refused): try another pod


class ClaimLost(Exception):
    """A warm pod's claim patch failed: nothing of the request reached it; claim another."""


@dataclass(frozen=True, kw_only=True)
class Claim:
    """A claimed warm pod; ``by_exec``: its request is still to be handed over by exec (else it
    is already in the pod's annotation), and ``confirmed`` is the claim's patch, sent beside
    the exec's connection: the request goes into the exec only once it says :data:`OURS`."""

    name: str
    by_exec: bool
    confirmed: asyncio.Task[str] | None = None
    held: HeldAttach | None = None  # the attach opened while the pod waited, if any


def _unmarked(output: ExecOutput) -> ExecOutput:
    """An attach's output as an exec's: the runner's line on stdout less its marker."""
    line = output.stdout
    marker = LOG_MARKER.encode()
    return dataclasses.replace(
        output, stdout=line[len(marker) :] if line.startswith(marker) else b""
    )


def fits(limits: Limits, pool: Limits) -> bool:
    """Whether a request with ``limits`` may run in a pod made for ``pool``."""
    return (limits.cpu, limits.memory_bytes, limits.scratch_bytes) == (
        pool.cpu,
        pool.memory_bytes,
        pool.scratch_bytes,
    )


def _started_at(pod: JSON) -> datetime | None:
    value = (pod.get("status") or {}).get("startTime")
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


class WarmPodPool:
    def __init__(
        self,
        client: AsyncClient,
        events: PodEvents,
        settings: PodSettings,
        size: int,
        limits: Limits,
        *,
        pod_exec: PodExec | None = None,
        attach: bool = True,
    ) -> None:
        """``pod_exec``: how requests are handed over by attach (unless not ``attach``) or exec;
        None: by annotation only."""
        self.size = size
        self.limits = limits
        self._client = client
        self.settings = settings
        self._ready: dict[str, datetime] = {}  # Running, unclaimed -> its start time; oldest first
        self._pending: set[str] = set()  # created, not Running yet
        self._claimed: set[str] = set()  # never ready again, whatever late events say
        self._changed = asyncio.Event()
        self._refill: asyncio.Task[None] | None = None
        self.claims = 0
        self.misses = 0
        self.handovers = 0  # claims whose result came back through exec
        self._pod_exec = pod_exec
        self._exec = pod_exec  # None once the pool stopped handing over by exec
        self._exec_failures = 0
        self._attach = attach and pod_exec is not None  # False once pods/attach was refused
        self._held: dict[str, HeldAttach] = {}  # ready pod -> the attach opened while it waits
        self._closing: set[asyncio.Task[None]] = set()
        events.subscribe(self._observe)
        self._events = events

    @property
    def ready(self) -> int:
        return len(self._ready)

    async def start(self, timeout_s: float = 120.0) -> None:
        """Create the pool and wait until every pod is Running."""
        if self._refill is None:
            self._refill = asyncio.create_task(self._keep_full(), name="sandbox-warm-pool")
        deadline = time.monotonic() + timeout_s
        while len(self._ready) < self.size and time.monotonic() < deadline:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 1.0)
        if len(self._ready) < self.size:
            log.warning("warm pool: %d of %d pods ready", len(self._ready), self.size)

    @property
    def hands_over_by_exec(self) -> bool:
        return self._exec is not None

    async def claim(self, request: ExecutionRequest) -> Claim | None:
        """Claim a ready pod for ``request``; None: none is ready (take the cold path).

        With exec the claim's patch only relabels the pod and sets its deadline, and is sent
        while :meth:`hand_over` opens the exec (``Claim.confirmed``); without, the patch writes
        the request into the annotation too, and is awaited here.
        """
        if not fits(request.limits, self.limits):
            return None
        while self._ready:
            # The oldest first: a pod that has only just become Running may still be starting
            # its runner (Python, twice), which the request would wait for.
            name = next(iter(self._ready))
            started = self._ready.pop(name)
            self._claimed.add(name)
            self._changed.set()
            self._events.expect(name)
            age = (datetime.now(UTC) - started).total_seconds()
            by_exec = self._exec is not None
            metadata: JSON = {"labels": {WARM_LABEL: "claimed"}}
            if not by_exec:
                metadata["annotations"] = {REQUEST_ANNOTATION: payload(request)}
            body = {
                "metadata": metadata,
                "spec": {
                    "activeDeadlineSeconds": max(1, math.ceil(age))
                    + math.ceil(request.limits.timeout_s)
                    + (HANDOVER_GRACE_S if by_exec else 0)
                    + CLAIM_GRACE_S
                },
            }
            held = self._held.pop(name, None)
            if by_exec:
                confirmed = asyncio.create_task(self._confirm(name, body), name=f"claim-{name}")
                return Claim(name=name, by_exec=True, confirmed=confirmed, held=held)
            self._close_held(held)
            if await self._confirm(name, body) != LOST:
                return Claim(name=name, by_exec=False)
        self.misses += 1
        return None

    async def _confirm(self, name: str, body: JSON) -> str:
        """Send a claim's patch: :data:`OURS`, :data:`NOT_OURS` or :data:`LOST`."""
        try:
            pod = await self._patch(name, body)
        except (ApiError, httpx2.HTTPError) as e:
            self._events.forget(name)
            log.warning("warm pod %s could not be claimed (%s); trying another", name, e)
            return LOST
        self.claims += 1
        if self._ours(pod.to_dict()):
            return OURS
        log.error("warm pod %s is not labelled as this gateway's claim: no handover", name)
        return NOT_OURS

    def _ours(self, pod: JSON) -> bool:
        """Whether a pod (the claim's answer) is this gateway's claimed warm pod: the only pods
        the gateway execs into."""
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        return (
            meta.get("namespace") == self.settings.namespace
            and labels.get(GATEWAY_LABEL) == self.settings.gateway
            and labels.get(WARM_LABEL) == "claimed"
        )

    async def hand_over(
        self, claim: Claim, request: ExecutionRequest, max_result_bytes: int
    ) -> ExecutionResult | None:
        """Run ``request`` in claimed pod ``claim.name`` by attach or exec; its result, or
        None when it did not come back that way (the caller writes the annotation and reads the
        result from the pod: the runner may or may not have the request). ClaimLost: the claim's
        patch failed, and the request went nowhere.

        The connection opens while the claim's patch is under way; the request line is sent
        only once the patch's answer shows the pod :data:`OURS`. Otherwise the connection gets
        an empty line (the runner ignores it and keeps waiting) and ends.
        """
        name, confirmed = claim.name, claim.confirmed
        if confirmed is None:
            return None

        async def ours() -> bool:
            return await confirmed == OURS

        try:
            handed = await self._exec_or_none(claim, request, max_result_bytes, ours)
        except BaseException:
            confirmed.cancel()
            raise
        if await confirmed == LOST:
            raise ClaimLost(name)
        if handed is None:
            return None
        output, started = handed
        elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
        result = result_from_json(output.stdout.decode("utf-8", "replace"), elapsed_ms)
        if result is None:  # (a whole result is the runner's, whatever killed sh after it)
            detail = output.stderr.decode("utf-8", "replace").strip()[:200] or "no result"
            error = ExecError(f"exit {output.exit_code}: {detail}", started=True)
            self._exec_failed(name, error, counts=output.exit_code in NO_RUNNER_EXITS)
            return None
        self._exec_failures = 0
        self.handovers += 1
        return result

    async def _exec_or_none(
        self,
        claim: Claim,
        request: ExecutionRequest,
        max_result_bytes: int,
        ours: Callable[[], Awaitable[bool]],
    ) -> tuple[ExecOutput, float] | None:
        """The handover's output and when it started: by attach where allowed (the attach held
        open while the pod waited, else a new one), else by exec; None if it brought nothing
        back (logged, unless the request was withheld: the claim was not ours)."""
        name, pod_exec = claim.name, self._exec
        held = claim.held if self._attach and pod_exec is not None else None
        if held is None:
            self._close_held(claim.held)  # (attach or exec was refused since it was opened)
        if pod_exec is None:
            return None
        started = time.perf_counter()
        limit_s = request.limits.timeout_s + HANDOVER_GRACE_S
        line = handover_line(request)
        gate = (ours, HANDOVER_ABORT)
        try:
            if self._attach:
                try:
                    if held is not None:
                        output = await held.send(
                            line, max_stdout=max_result_bytes, time_limit_s=limit_s, gate=gate
                        )
                    else:
                        output = await pod_exec.attach(
                            self.settings.namespace, name, CONTAINER, line,
                            max_stdout=max_result_bytes, time_limit_s=limit_s, gate=gate,
                        )  # fmt: skip
                    return _unmarked(output), started
                except ExecError as e:
                    if e.started or e.withheld:
                        raise  # the runner may have the request: no second way
                    self._attach_failed(name, e)  # nothing was sent: exec it
            output = await pod_exec.run(
                self.settings.namespace, name, CONTAINER, handover_command(), line,
                max_stdout=max_result_bytes, time_limit_s=limit_s, gate=gate,
            )  # fmt: skip
        except ExecError as e:
            if not e.withheld:
                self._exec_failed(name, e, counts=not e.started)
            return None
        return output, started

    def _attach_failed(self, name: str, error: ExecError) -> None:
        """An attach refused before anything was sent: a 403 stops the pool's attaching."""
        if error.forbidden:
            self._attach = False
            for held in list(self._held.values()):
                self._close_held(held)
            self._held.clear()
            log.warning(
                "warm pool: pods/attach is not allowed (%s); requests are handed over by exec "
                "from now on (slower: a process in the pod). Grant get and create on "
                "pods/attach in %s (deploy/gateway/rbac.yaml)",
                error,
                self.settings.namespace,
            )
        else:
            log.warning("warm pod %s: no attach (%s); handing over by exec", name, error)

    def _exec_failed(self, name: str, error: ExecError, *, counts: bool) -> None:
        """Log a handover that brought no result. A refusal (403) stops the pool's handovers at
        once; so do :data:`EXEC_FAILURES_TOLERATED` in a row that ``count`` (the exec could not
        reach a runner: not what the code did, such as running out of memory)."""
        if error.forbidden:
            self._exec = None
            log.warning(
                "warm pool: pods/exec is not allowed (%s); requests go through the warm pods' "
                "annotation from now on (slower: the kubelet's volume sync). Grant get and "
                "create on pods/exec in %s (deploy/gateway/rbac.yaml)",
                error,
                self.settings.namespace,
            )
            return
        if counts:
            self._exec_failures += 1
        if self._exec_failures >= EXEC_FAILURES_TOLERATED:
            self._exec = None
            log.warning(
                "warm pool: %d handovers by exec failed in a row, the last in pod %s (%s); "
                "requests go through the warm pods' annotation from now on",
                self._exec_failures,
                name,
                error,
            )
            return
        log.warning("warm pod %s: no result by exec (%s); reading it from the pod", name, error)

    async def write_request(self, name: str, request: ExecutionRequest) -> None:
        """The fallback: ``request`` into claimed pod ``name``'s annotation (the runner takes
        it unless it already has the request from the exec)."""
        body = {"metadata": {"annotations": {REQUEST_ANNOTATION: payload(request)}}}
        try:
            await self._patch(name, body)
        except (ApiError, httpx2.HTTPError) as e:  # the pod's own status still ends the wait
            log.warning("could not write the request into warm pod %s: %s", name, e)

    async def _patch(self, name: str, body: JSON) -> Pod:
        """A merge patch of warm pod ``name``, as the gateway's field manager."""
        return await self._client.patch(
            Pod,
            name,
            body,
            namespace=self.settings.namespace,
            patch_type=PatchType.MERGE,
            field_manager=GATEWAY_FIELD_MANAGER,
        )

    def _observe(self, pod: JSON, deleted: bool) -> None:
        meta = pod.get("metadata") or {}
        name = meta.get("name", "")
        if deleted:
            self._claimed.discard(name)
        if (meta.get("labels") or {}).get(WARM_LABEL) != "ready" or name in self._claimed:
            return
        if deleted or meta.get("deletionTimestamp") or self._ended(pod):
            self._ready.pop(name, None)
            self._pending.discard(name)
            self._close_held(self._held.pop(name, None))
        elif (pod.get("status") or {}).get("phase") == "Running":
            started = _started_at(pod) or datetime.now(UTC)
            if name in self._pending or name not in self._ready:
                self._pending.discard(name)
                self._ready[name] = started
                self._hold(name)
        else:
            return
        self._changed.set()

    def _hold(self, name: str) -> None:
        """Open the attach a claim of ready pod ``name`` will send its request into."""
        if self._attach and self._exec is not None and name not in self._held:
            self._held[name] = self._exec.hold_attach(self.settings.namespace, name, CONTAINER)

    def _close_held(self, held: HeldAttach | None) -> None:
        """Close an attach no claim will use, in the background (nothing was sent on it)."""
        if held is not None:
            task = asyncio.ensure_future(held.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    @staticmethod
    def _ended(pod: JSON) -> bool:
        return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")

    async def _keep_full(self) -> None:
        while True:
            missing = self.size - len(self._ready) - len(self._pending)
            if missing > 0:
                await asyncio.gather(*(self._create() for _ in range(missing)))
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 5.0)

    async def _create(self) -> None:
        name = f"sbx-warm-{secrets.token_hex(5)}"
        self._pending.add(name)
        pod: Any = Pod.from_dict(render_warm_pod(name, self.limits, self.settings))
        try:
            await self._client.create(pod, field_manager=GATEWAY_FIELD_MANAGER)
        except (ApiError, httpx2.HTTPError) as e:
            self._pending.discard(name)
            log.error("warm pool: cannot create sandbox pod %s: %s", name, e)
            await asyncio.sleep(2.0)

    async def aclose(self) -> None:
        held, self._held = list(self._held.values()), {}
        await asyncio.gather(*(h.aclose() for h in held), *self._closing)
        if self._pod_exec is not None:
            await self._pod_exec.aclose()
            self._pod_exec = self._exec = None
        if self._refill is not None:
            self._refill.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refill
            self._refill = None
        self._ready.clear()
        self._pending.clear()
        self._claimed.clear()
