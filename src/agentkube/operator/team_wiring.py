"""What a reconcile adds for teams: delegation across namespaces, KEDA autoscaling and an
executor's pending work.

:class:`TeamWiring` is called by the Agent reconcile with the rendered children and gives back
the children to apply, extra conditions, extra status fields, and whether to retry:

- **other namespaces** (:mod:`cross_namespace`): ``agent:<name>.<namespace>`` peers and the
  NetworkPolicy rules of both sides, where the target allows it (``DelegationAllowed``); when
  an Agent's relations across namespaces change, its counterparts are reconciled too;
- **autoscaling** (:mod:`autoscaling`, :mod:`autoscaling_sync`): ``spec.autoscale`` with KEDA
  installed adds the TriggerAuthentication and ScaledObject and leaves the Deployment's replicas
  to KEDA (``Autoscaling=True``); without KEDA's CRD, ``Autoscaling=False`` (``KEDANotInstalled``)
  and ``spec.replicas`` holds; without shared memory's Redis there is no queue to scale on
  (``NoSharedQueue``). A ScaledObject whose Agent lost ``spec.autoscale`` is deleted.
- **pending work**: an executor's ``status.pendingTasks`` (the ``Pending`` column of ``kubectl
  get agents``) is its stream's entries not yet finished, read by the operator over its admin
  Redis connection — the agents get no right to write their status. It is written only when it
  changed (the status patch leaves equal values alone) and read at most every
  ``pendingSeconds`` per executor: :meth:`TeamWiring.refresh_forever` asks for a reconcile of
  each executor that often, so the number is at most that old and an idle queue costs no write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from agentkube.api.models import Agent
from agentkube.background import running
from agentkube.memory.errors import MemoryFailure
from agentkube.memory.team_streams import GROUP, task_stream
from agentkube.operator.autoscaling import (
    CONDITION,
    KINDS,
    render_scaling,
    replicas_left_to_keda,
)
from agentkube.operator.cache import Cache
from agentkube.operator.config import OperatorConfig
from agentkube.operator.cross_namespace import resolve, wire
from agentkube.operator.errors import ReconcileError, TransientApiError
from agentkube.operator.memory_access import NotReady
from agentkube.operator.status import Check

JSON = dict[str, Any]
Ref = tuple[str, str, str]
log = logging.getLogger(__name__)


class Keda(Protocol):
    async def installed(self, namespace: str) -> bool: ...


class Backlog(Protocol):
    async def backlog(self, stream: str, group: str) -> int: ...


class Deleter(Protocol):
    async def delete(self, kind: str, namespace: str, name: str) -> None: ...


@dataclass(frozen=True, kw_only=True)
class Adjusted:
    children: list[JSON]
    checks: list[Check] = field(default_factory=list)
    extra: JSON = field(default_factory=dict)
    retry: bool = False


class TeamWiring:
    def __init__(
        self,
        *,
        config: OperatorConfig,
        cache: Cache,
        api: Deleter,
        keda: Keda | None,
        queues: Backlog | None,
        submit: Callable[[Ref], None] | None = None,
    ) -> None:
        self.config = config
        self.cache = cache
        self.api = api
        self.keda = keda  # None: no shared Redis, so nothing to scale on
        self.queues = queues
        self._submit = submit  # asks for a reconcile (None: nobody to ask)
        self._executors: set[Ref] = set()
        self._related: dict[Ref, frozenset[Ref]] = {}

    async def adjust(self, agent: Agent, namespace: str, children: list[JSON]) -> Adjusted:
        ref: Ref = ("Agent", namespace, agent.metadata.name)
        resolved = resolve(agent, namespace, self.cache)
        self._relate(ref, resolved.related)
        scaled = await self._autoscale(
            agent, namespace, wire(children, agent, resolved, self.config)
        )
        delegation = resolved.check()
        extra: JSON = {}
        if agent.spec.role == "executor" and self.queues is not None:
            self._executors.add(ref)
            pending = await self._pending(namespace, agent.metadata.name)
            if pending is not None:
                extra["pendingTasks"] = pending
        else:
            self._executors.discard(ref)
        checks = [*([delegation] if delegation else []), *scaled.checks]
        return Adjusted(children=scaled.children, checks=checks, extra=extra, retry=scaled.retry)

    def _relate(self, ref: Ref, related: frozenset[Ref]) -> None:
        """Reconcile the Agents this one's relation with changed (both sides render it)."""
        old = self._related.get(ref, frozenset())
        if related == old:
            return
        self._related[ref] = related
        for other in sorted(old | related):
            if self._submit is not None and other != ref:
                self._submit(other)

    async def _autoscale(self, agent: Agent, namespace: str, children: list[JSON]) -> Adjusted:
        autoscale = agent.spec.autoscale
        if self.keda is None:
            if autoscale is None:
                return Adjusted(children=children)
            message = (
                "autoscaling follows the task queue in shared memory's Redis, which the operator "
                "is not configured with (memory.redis); spec.replicas is used"
            )
            check = Check(type=CONDITION, ok=False, reason="NoSharedQueue", message=message)
            return Adjusted(children=children, checks=[check])
        try:
            installed = await self.keda.installed(namespace)
            if autoscale is None:
                await self._prune(agent, namespace)
                return Adjusted(children=children)
        except ReconcileError as e:
            check = Check(type=CONDITION, ok=False, reason="KEDAUnknown", message=str(e))
            retry = isinstance(e, TransientApiError)
            return Adjusted(children=children, checks=[check] if autoscale else [], retry=retry)
        if not installed:
            message = (
                "KEDA's ScaledObject CRD (keda.sh/v1alpha1) is not installed; install KEDA "
                f"to scale on the queue — until then spec.replicas ({agent.spec.replicas}) holds"
            )
            check = Check(type=CONDITION, ok=False, reason="KEDANotInstalled", message=message)
            return Adjusted(children=children, checks=[check])
        assert self.config.memory is not None and self.config.memory.redis is not None
        scaling = render_scaling(agent, namespace, self.config.memory.redis.url)
        message = (
            f"KEDA scales {autoscale.min_replicas}-{autoscale.max_replicas} replicas, one per "
            f"{autoscale.lag_target} queued tasks"
        )
        check = Check(type=CONDITION, ok=True, reason="ScaledObject", message=message)
        return Adjusted(children=[*replicas_left_to_keda(children), *scaling], checks=[check])

    async def _prune(self, agent: Agent, namespace: str) -> None:
        """Delete the KEDA objects this very Agent (uid) controls; it no longer autoscales."""
        name, uid = agent.metadata.name, agent.metadata.uid
        for kind in reversed(KINDS):  # the ScaledObject first: its HPA goes with it
            live = self.cache.get(kind, namespace, name)
            owners = (live or {}).get("metadata", {}).get("ownerReferences") or []
            if any(o.get("uid") == uid and o.get("controller") for o in owners):
                await self.api.delete(kind, namespace, name)
                self.cache.remove(kind, namespace, name)

    async def _pending(self, namespace: str, agent: str) -> int | None:
        assert self.queues is not None
        try:
            return await self.queues.backlog(task_stream(namespace, agent), GROUP)
        except (MemoryFailure, NotReady) as e:
            log.warning("pending tasks of Agent %s/%s unknown: %s", namespace, agent, e)
            return None

    async def refresh_forever(self, submit: Callable[[Ref], None]) -> None:
        """Ask for a reconcile of every executor each ``pendingSeconds`` (its pending count)."""
        while True:
            await asyncio.sleep(self.config.pending_seconds)
            for ref in sorted(self._executors):
                if self.cache.get(*ref) is None:
                    self._executors.discard(ref)
                else:
                    submit(ref)


@contextlib.asynccontextmanager
async def refreshing(wiring: TeamWiring | None, submit: Callable[[Ref], None]) -> Any:
    """Run :meth:`TeamWiring.refresh_forever` for the duration of the block."""
    active = wiring is not None and wiring.queues is not None
    async with running(wiring.refresh_forever(submit) if wiring and active else None):
        yield
