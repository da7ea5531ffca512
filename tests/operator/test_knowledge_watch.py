"""The ConfigMaps KnowledgeBases name: which events ask for a reconcile, what is kept, and the
one read of a ConfigMap not seen yet (the watch itself runs in test_knowledge_cluster.py)."""

from __future__ import annotations

from typing import Any, cast

from lightkube import AsyncClient

from agentkube.operator.cache import Cache
from agentkube.operator.knowledge_watch import SourceConfigMaps
from agentkube.operator.queueing import Ref

JSON = dict[str, Any]


class Reads:
    def __init__(self, found: dict[tuple[str, str], JSON]) -> None:
        self.found = found
        self.reads: list[tuple[str, str]] = []

    async def read(self, kind: str, namespace: str, name: str) -> JSON | None:
        self.reads.append((namespace, name))
        return self.found.get((namespace, name))


def kb(namespace: str, name: str, *config_maps: str) -> JSON:
    return {
        "kind": "KnowledgeBase",
        "metadata": {"namespace": namespace, "name": name, "uid": name},
        "spec": {"collection": name, "sources": {"configMaps": [{"name": c} for c in config_maps]}},
    }


def config_map(namespace: str, name: str, data: JSON, **labels: str) -> JSON:
    return {"metadata": {"namespace": namespace, "name": name, "labels": labels}, "data": data}


def setup(reads: Reads | None = None) -> tuple[SourceConfigMaps, list[Ref]]:
    cache, submitted = Cache(), list[Ref]()
    for body in (kb("a", "handbook", "docs", "faq"), kb("a", "runbook", "docs"),
                 kb("b", "handbook", "docs")):  # fmt: skip
        cache.observe(body, "KnowledgeBase")  # as the watch delivers them
    client = cast(AsyncClient, None)  # not used by what is tested here
    return SourceConfigMaps(client, cache, reads or Reads({}), submitted.append), submitted


def test_a_data_change_reconciles_the_knowledge_bases_of_its_namespace_that_name_it() -> None:
    sources, submitted = setup()
    sources.on_event("ADDED", config_map("a", "docs", {"x.md": "1"}))
    assert sorted(submitted) == [
        ("KnowledgeBase", "a", "handbook"),
        ("KnowledgeBase", "a", "runbook"),
    ]
    submitted.clear()
    sources.on_event("MODIFIED", config_map("a", "docs", {"x.md": "1"}, touched="yes"))
    assert submitted == []  # the same data: nothing to ingest
    sources.on_event("MODIFIED", config_map("a", "faq", {"q.md": "2"}))
    assert submitted == [("KnowledgeBase", "a", "handbook")]
    submitted.clear()
    sources.on_event("DELETED", config_map("a", "faq", {"q.md": "2"}))
    assert submitted == [("KnowledgeBase", "a", "handbook")]


async def test_a_config_map_no_knowledge_base_names_is_neither_kept_nor_routed() -> None:
    reads = Reads({})
    sources, submitted = setup(reads)
    sources.on_event("ADDED", config_map("a", "kube-root-ca.crt", {"ca.crt": "..."}))
    sources.on_event("ADDED", config_map("c", "docs", {"x.md": "1"}))
    assert submitted == []
    await sources.get("c", "docs")  # not kept from the event: read
    assert reads.reads == [("c", "docs")]


async def test_a_config_map_not_seen_yet_is_read_once_then_kept_from_the_watch() -> None:
    reads = Reads({("a", "docs"): config_map("a", "docs", {"x.md": "1"})})
    sources, _ = setup(reads)
    assert await sources.get("a", "docs") == {"data": {"x.md": "1"}}
    assert await sources.get("a", "docs") == {"data": {"x.md": "1"}}
    assert await sources.get("a", "faq") is None  # missing: remembered until its ADDED event
    assert await sources.get("a", "faq") is None
    assert reads.reads == [("a", "docs"), ("a", "faq")]
    sources.on_event("ADDED", config_map("a", "faq", {"q.md": "2"}))
    assert await sources.get("a", "faq") == {"data": {"q.md": "2"}}
    assert len(reads.reads) == 2
