"""The Kubernetes backend starts fail-closed, once, and its sweep spares what is new.

A recording client stands in for the API server here because the failure is one the real one
gives only by accident (refusing one write, then accepting it); the same start path runs against
the real control plane in test_kubernetes_backend.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.batch_v1 import Job

from agentkube.sandbox.contract import ExecutionRequest
from agentkube.sandbox.errors import SandboxUnavailable
from agentkube.sandbox.kubernetes import KubernetesSandbox


class RecordingClient:
    """Answers like an API server that refuses the first ``refusals`` writes."""

    def __init__(self, refusals: int = 0, jobs: list[Job] | None = None) -> None:
        self.refusals = refusals
        self.applied: list[str] = []
        self.created: list[Any] = []
        self.deleted: list[str] = []
        self.jobs = jobs or []

    async def apply(self, obj: Any, **_: Any) -> Any:
        await asyncio.sleep(0.01)  # a round trip, so concurrent callers overlap
        if self.refusals:
            self.refusals -= 1
            raise httpx2.ConnectError("connection refused")
        self.applied.append(type(obj).__name__)
        return obj

    async def list(self, kind: Any, **_: Any) -> AsyncIterator[Any]:
        for job in self.jobs if kind is Job else []:
            yield job

    def watch(self, *_: Any, **__: Any) -> AsyncIterator[Any]:
        async def forever() -> AsyncIterator[Any]:
            await asyncio.Event().wait()
            yield None

        return forever()

    async def create(self, obj: Any, **_: Any) -> Any:
        self.created.append(obj)
        raise httpx2.ConnectError("no jobs in this test")

    async def delete(self, kind: Any, name: str, **_: Any) -> None:
        self.deleted.append(name)


async def test_a_refused_network_policy_leaves_the_backend_unstarted_and_runs_nothing() -> None:
    client = RecordingClient(refusals=1)
    sandbox = KubernetesSandbox(client)  # type: ignore[arg-type]
    try:
        with pytest.raises(SandboxUnavailable, match="unreachable"):
            await sandbox.execute(ExecutionRequest(code="print(1)"))
        assert client.created == []  # no pod without its deny-all NetworkPolicy
        await sandbox.start()  # the next call tries again, and this time it holds
        assert client.applied == ["NetworkPolicy"]
    finally:
        await sandbox.aclose()


async def test_concurrent_first_calls_share_one_start() -> None:
    client = RecordingClient()
    sandbox = KubernetesSandbox(client)  # type: ignore[arg-type]
    try:
        await asyncio.gather(*(sandbox.start() for _ in range(5)))
        assert client.applied == ["NetworkPolicy"]
    finally:
        await sandbox.aclose()


async def test_the_sweep_spares_jobs_created_after_it_began() -> None:
    old = Job(
        metadata=ObjectMeta(name="left-over", creationTimestamp=datetime(2020, 1, 1, tzinfo=UTC))
    )
    new = Job(
        metadata=ObjectMeta(name="brand-new", creationTimestamp=datetime.now(UTC) + timedelta(1))
    )
    client = RecordingClient(jobs=[old, new])
    sandbox = KubernetesSandbox(client)  # type: ignore[arg-type]
    try:
        await sandbox.sweep()
        assert client.deleted == ["left-over"]
    finally:
        await sandbox.aclose()
