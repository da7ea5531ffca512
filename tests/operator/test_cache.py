"""The operator's cache without a cluster: what the watch saw, and what the operator wrote."""

from __future__ import annotations

from typing import Any

from agentkube.operator.cache import STALE_SECONDS, Cache

JSON = dict[str, Any]


def deployment(version: str, replicas: int = 1) -> JSON:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "a", "namespace": "ns", "resourceVersion": version, "uid": "u"},
        "spec": {"replicas": replicas},
    }


def replicas(cache: Cache) -> int | None:
    body = cache.get("Deployment", "ns", "a")
    return None if body is None else int(body["spec"]["replicas"])


def test_a_write_is_seen_until_the_watch_brings_its_version() -> None:
    cache = Cache()
    cache.observe(deployment("opaque-1"), "Deployment")
    cache.put(deployment("opaque-3", replicas=3))
    assert replicas(cache) == 3
    # Another writer's change that came before it: still older news.
    cache.observe(deployment("opaque-2", replicas=1), "Deployment")
    assert replicas(cache) == 3
    cache.observe(deployment("opaque-3", replicas=3), "Deployment")
    assert replicas(cache) == 3
    # Versions are compared for equality only: "opaque-0" is not "older", it came later.
    cache.observe(deployment("opaque-0", replicas=5), "Deployment")
    assert replicas(cache) == 5


def test_a_write_the_watch_never_brings_gives_way_to_what_it_saw() -> None:
    now = [0.0]
    cache = Cache(clock=lambda: now[0])
    cache.observe(deployment("1"), "Deployment")
    cache.put(deployment("2", replicas=3))
    cache.observe(deployment("9", replicas=4), "Deployment")  # a re-list skipped version 2
    assert replicas(cache) == 3
    now[0] = STALE_SECONDS + 1
    assert replicas(cache) == 4


def test_a_deletion_hides_the_object_until_the_watch_drops_it() -> None:
    cache = Cache()
    cache.observe(deployment("7"), "Deployment")
    cache.remove("Deployment", "ns", "a")
    assert cache.get("Deployment", "ns", "a") is None
    cache.forget("Deployment", "ns", "a")
    cache.observe(deployment("9"), "Deployment")  # made again by someone
    assert cache.get("Deployment", "ns", "a") is not None


def test_trimmed_bodies_drop_managed_fields() -> None:
    cache = Cache()
    body = deployment("1")
    body["metadata"]["managedFields"] = [{"manager": "x"}]
    cache.observe(body, "Deployment")
    assert "managedFields" not in cache.get("Deployment", "ns", "a")["metadata"]  # type: ignore[index]


def test_a_deletion_the_watch_saw_drops_what_was_written_of_that_object() -> None:
    """An Agent whose status the operator just wrote, then deleted: no reconcile may see it
    (and re-create its children or its namespace's Secret) for the stale period."""
    cache = Cache()
    cache.observe(deployment("1"), "Deployment")
    cache.put(deployment("2", replicas=3))  # written: uid "u"
    cache.forget("Deployment", "ns", "a", "u")
    assert cache.get("Deployment", "ns", "a") is None


def test_a_deletion_of_an_older_object_keeps_the_one_made_again() -> None:
    cache = Cache()
    made_again = deployment("5", replicas=2)
    made_again["metadata"]["uid"] = "u2"
    cache.put(made_again)
    cache.forget("Deployment", "ns", "a", "u")  # the old object's DELETED, delivered late
    assert replicas(cache) == 2
