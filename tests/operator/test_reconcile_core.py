"""The reconcile core without a cluster: Reconciler + Cache over a recording writer, and the
reconcile queue. (The same paths run against the real API server in test_cluster.py.)"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from agentkube.api.pod_contract import ENV_MODEL_BASE_URL
from agentkube.operator.cache import Cache
from agentkube.operator.config import OperatorConfig
from agentkube.operator.errors import RejectedByApi, TransientApiError
from agentkube.operator.queueing import ReconcileQueue, Ref
from agentkube.operator.reconciling import Reconciler
from tests.operator.conftest import agent, model

JSON = dict[str, Any]
NOW = datetime(2026, 12, 1, tzinfo=UTC)


class RecordingWriter:
    """Stands where the Applier talks to the API server: records every write and answers as
    server-side apply does (the object back, with a resourceVersion)."""

    def __init__(self) -> None:
        self.writes: Counter[str] = Counter()
        self.applied: list[str] = []
        self.statuses: list[JSON] = []
        self.fail_next: Exception | None = None
        self.existing: dict[tuple[str, str, str], JSON] = {}  # what reads find on the server
        self.read_kinds: Counter[str] = Counter()
        self.fail_reads: Exception | None = None
        self._versions = itertools.count(1)

    def clock(self) -> datetime:
        return NOW

    async def apply(self, obj: JSON) -> JSON:
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        self.writes[f"apply {obj['kind']}"] += 1
        self.applied.append(obj["kind"])
        meta = {**obj["metadata"], "resourceVersion": str(next(self._versions)), "generation": 1}
        return {**obj, "metadata": meta}

    async def read(self, kind: str, namespace: str, name: str) -> JSON | None:
        self.read_kinds[kind] += 1
        if self.fail_reads is not None:
            raise self.fail_reads
        return self.existing.get((kind, namespace, name))

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        self.writes[f"delete {kind}"] += 1

    async def patch_status(self, kind: str, namespace: str, name: str, status: JSON) -> None:
        self.writes[f"status {kind}"] += 1
        self.statuses.append(status)

    async def post_event(self, owner: JSON, *, type: str, reason: str, message: str) -> None:
        self.writes["create Event"] += 1


def _setup(**spec: Any) -> tuple[Reconciler, Cache, RecordingWriter]:
    cache, writer = Cache(), RecordingWriter()
    body = agent(**spec).model_dump(by_alias=True, exclude_none=True, mode="json")
    body["metadata"].update(namespace="team-a", resourceVersion="1")
    cache.put(body, "Agent")
    config = OperatorConfig.model_validate({"defaultEndpoint": {"url": "http://models.example/v1"}})
    return Reconciler(cache=cache, applier=writer, config=config), cache, writer


async def test_a_new_agent_gets_its_children_prerequisites_first_and_a_status() -> None:
    reconciler, _, writer = _setup()
    assert await reconciler.reconcile("Agent", "team-a", "research-agent") is False
    first_three = set(writer.applied[:3])
    assert first_three == {"ServiceAccount", "ConfigMap", "PersistentVolumeClaim"}
    assert set(writer.applied[3:]) == {"Deployment", "Service", "NetworkPolicy"}
    (status,) = writer.statuses
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"  # the Deployment is not available yet
    assert status["endpoint"] == "http://research-agent.team-a.svc:8080"


async def test_reconciling_an_unchanged_agent_writes_nothing() -> None:
    reconciler, _, writer = _setup()
    await reconciler.reconcile("Agent", "team-a", "research-agent")
    before = sum(writer.writes.values())
    ran = 0
    for _ in range(3):
        assert await reconciler.reconcile("Agent", "team-a", "research-agent") is False
        ran += 1
    assert ran == 3  # the reconciles did run ...
    assert sum(writer.writes.values()) == before  # ... and wrote nothing


async def test_a_changed_spec_reapplies_only_what_it_changes() -> None:
    reconciler, cache, writer = _setup()
    await reconciler.reconcile("Agent", "team-a", "research-agent")
    body = cache.get("Agent", "team-a", "research-agent")
    assert body is not None
    cache.put({**body, "spec": {**body["spec"], "replicas": 3}})
    writer.applied.clear()
    await reconciler.reconcile("Agent", "team-a", "research-agent")
    # agent.yaml (the ConfigMap) carries the spec; identity, volume, Service, policy stay put.
    assert sorted(writer.applied) == ["ConfigMap", "Deployment"]


async def test_a_transient_failure_asks_for_a_retry_and_a_rejection_does_not() -> None:
    reconciler, _, writer = _setup()
    writer.fail_next = TransientApiError("apply ServiceAccount: API server unreachable")
    assert await reconciler.reconcile("Agent", "team-a", "research-agent") is True
    reconciler, _, writer = _setup()
    writer.fail_next = RejectedByApi("apply ServiceAccount: forbidden")
    assert await reconciler.reconcile("Agent", "team-a", "research-agent") is False
    reconciled = next(c for c in writer.statuses[-1]["conditions"] if c["type"] == "Reconciled")
    assert (reconciled["status"], reconciled["reason"]) == ("False", "ApplyFailed")
    assert writer.writes["create Event"] == 1


async def test_an_agent_this_release_cannot_run_gets_no_pod_and_says_why() -> None:
    reconciler, _, writer = _setup(tools=["python-interpreter", "mcp:ftp://tools.example/mcp"])
    await reconciler.reconcile("Agent", "team-a", "research-agent")
    assert writer.applied == []
    ready = next(c for c in writer.statuses[0]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Unsupported")
    assert "'mcp:ftp://tools.example/mcp' (mcp: takes an http(s) URL" in ready["message"]


async def test_an_existing_object_without_the_agents_controller_reference_is_not_adopted() -> None:
    reconciler, _, writer = _setup()
    foreign = {"kind": "Service", "metadata": {"name": "research-agent", "namespace": "team-a"}}
    writer.existing[("Service", "team-a", "research-agent")] = foreign
    assert await reconciler.reconcile("Agent", "team-a", "research-agent") is True  # retried
    assert "Service" not in writer.applied
    reconciled = next(c for c in writer.statuses[-1]["conditions"] if c["type"] == "Reconciled")
    assert reconciled["status"] == "False"
    assert reconciled["reason"] == "AdoptionRefused"
    assert reconciled["message"].startswith("Service team-a/research-agent already exists")
    assert writer.writes["create Event"] == 1


async def test_an_object_another_owner_controls_is_not_adopted_either() -> None:
    reconciler, cache, writer = _setup()
    owner = {"apiVersion": "ai.openvn/v1", "kind": "Agent", "name": "x", "uid": "other"}
    cache.put(
        {
            "kind": "ConfigMap",
            "metadata": {
                "name": "research-agent",
                "namespace": "team-a",
                "ownerReferences": [{**owner, "controller": True}],
            },
        }
    )
    await reconciler.reconcile("Agent", "team-a", "research-agent")
    assert "ConfigMap" not in writer.applied
    reconciled = next(c for c in writer.statuses[-1]["conditions"] if c["type"] == "Reconciled")
    assert reconciled["reason"] == "AdoptionRefused"


async def test_its_own_object_found_on_the_server_is_applied() -> None:
    reconciler, _, writer = _setup()
    mine = {"apiVersion": "ai.openvn/v1", "kind": "Agent", "name": "research-agent", "uid": "uid-1"}
    writer.existing[("Service", "team-a", "research-agent")] = {
        "kind": "Service",
        "metadata": {"ownerReferences": [{**mine, "controller": True}]},
    }
    assert await reconciler.reconcile("Agent", "team-a", "research-agent") is False
    assert "Service" in writer.applied


async def test_a_refused_placement_is_the_agents_condition_and_no_pod() -> None:
    reconciler, _, writer = _setup(placement={"pool": "sandbox"})
    assert await reconciler.reconcile("Agent", "team-a", "research-agent") is False
    assert writer.applied == []
    reconciled = next(c for c in writer.statuses[-1]["conditions"] if c["type"] == "Reconciled")
    assert reconciled["reason"] == "PlacementNotAllowed"
    assert "'sandbox' is not offered to namespace team-a" in reconciled["message"]


async def test_the_queue_runs_one_reconcile_per_object_at_a_time_and_coalesces() -> None:
    running: Counter[Ref] = Counter()
    most: Counter[Ref] = Counter()
    runs: Counter[Ref] = Counter()
    release = asyncio.Event()

    async def work(ref: Ref) -> bool:
        running[ref] += 1
        most[ref] = max(most[ref], running[ref])
        runs[ref] += 1
        await release.wait()
        running[ref] -= 1
        return False

    queue = ReconcileQueue(work, concurrency=4, retry_seconds=0.01, max_retry_seconds=0.1)
    a: Ref = ("Agent", "ns", "a")
    first = asyncio.ensure_future(queue.run(a))
    await asyncio.sleep(0)  # let the first run start
    extra = [asyncio.ensure_future(queue.run(a)) for _ in range(10)]
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, *extra)
    assert most[a] == 1
    assert runs[a] == 2  # the ten requests during the first run needed only one more
    await queue.close()


async def test_the_queue_retries_with_back_off_until_the_work_succeeds() -> None:
    attempts: list[float] = []
    done = asyncio.Event()

    async def flaky(ref: Ref) -> bool:
        attempts.append(asyncio.get_running_loop().time())
        if len(attempts) < 3:
            return True
        done.set()
        return False

    queue = ReconcileQueue(flaky, concurrency=1, retry_seconds=0.02, max_retry_seconds=1)
    await queue.run(("Model", "ns", "m"))
    await asyncio.wait_for(done.wait(), 5)
    assert len(attempts) == 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert gaps[1] >= gaps[0] * 1.5  # doubling back-off
    await queue.close()


async def test_failing_runs_asked_for_while_a_retry_is_due_do_not_stretch_the_back_off() -> None:
    """Right after a start several events ask for one object: all of them failing on the same
    outage must not multiply the wait before the retry that finds the outage over."""
    outage = True
    attempts: list[float] = []
    done = asyncio.Event()

    async def work(ref: Ref) -> bool:
        attempts.append(asyncio.get_running_loop().time())
        if not outage:
            done.set()
        return outage

    queue = ReconcileQueue(work, concurrency=1, retry_seconds=0.2, max_retry_seconds=60)
    ref: Ref = ("Agent", "ns", "a")
    began = asyncio.get_running_loop().time()
    for _ in range(6):  # six events, six failing runs, one after the other
        await queue.run(ref)
    outage = False
    await asyncio.wait_for(done.wait(), 5)
    # The first failure's retry (0.2 s) runs as planned, not 0.2 * 2**5 = 6.4 s later.
    assert attempts[-1] - began < 1.5, attempts
    assert len(attempts) == 7
    await queue.close()


async def test_a_forgotten_object_is_not_retried() -> None:
    calls = 0

    async def failing(ref: Ref) -> bool:
        nonlocal calls
        calls += 1
        return True

    queue = ReconcileQueue(failing, concurrency=1, retry_seconds=0.05, max_retry_seconds=1)
    ref: Ref = ("Agent", "ns", "gone")
    await queue.run(ref)
    queue.forget(ref)
    await asyncio.sleep(0.2)
    assert calls == 1
    await queue.close()


@pytest.mark.parametrize("kind", ["Agent", "Model"])
async def test_an_object_gone_from_the_cache_is_left_to_the_garbage_collector(kind: str) -> None:
    reconciler, _, writer = _setup()
    assert await reconciler.reconcile(kind, "team-a", "nothing-here") is False
    assert sum(writer.writes.values()) == 0


def _model_url(writer_statuses: list[JSON]) -> str:
    resolved = next(c for c in writer_statuses[-1]["conditions"] if c["type"] == "ModelResolved")
    return f"{resolved['status']} {resolved['reason']}: {resolved['message']}"


async def test_an_agent_reconciled_before_the_models_watch_listed_gets_its_model() -> None:
    """Right after a start the Agents' watch may deliver before the Models': the Model is read,
    not taken as missing (which would roll the Agent's pods onto a config without it)."""
    reconciler, cache, writer = _setup()
    served = model(endpoint={"url": "http://vllm.team-a.svc:8000/v1", "model": "llama"})
    body = served.model_dump(by_alias=True, exclude_none=True, mode="json")
    body["metadata"]["namespace"] = "team-a"
    writer.existing[("Model", "team-a", "llama-3-70b")] = body
    await reconciler.reconcile("Agent", "team-a", "research-agent")
    assert _model_url(writer.statuses).startswith("True ModelFound: llama at http://vllm.team-a")
    deployment = cache.get("Deployment", "team-a", "research-agent")
    assert deployment is not None
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": ENV_MODEL_BASE_URL, "value": "http://vllm.team-a.svc:8000/v1"} in env
    assert writer.read_kinds["Model"] == 1


async def test_a_model_read_and_not_found_is_not_read_again() -> None:
    reconciler, _, writer = _setup()  # no Model: the configured default endpoint
    for _ in range(3):
        await reconciler.reconcile("Agent", "team-a", "research-agent")
    assert _model_url(writer.statuses).startswith("True DefaultEndpoint")
    assert writer.read_kinds["Model"] == 1  # later misses wait for the watch


async def test_an_agent_whose_model_cannot_be_read_is_retried_and_nothing_is_applied() -> None:
    reconciler, _, writer = _setup()
    writer.fail_reads = TransientApiError("read Model team-a/llama-3-70b: API server unreachable")
    assert await reconciler.reconcile("Agent", "team-a", "research-agent") is True
    assert writer.applied == [] and writer.statuses == []
