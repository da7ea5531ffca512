"""The ConfigMaps KnowledgeBases name: watched, their data kept, a change re-reconciles.

The operator's kopf watch of ConfigMaps sees only its own children (a ``managed-by`` label
selector); a KnowledgeBase's sources are the user's ConfigMaps, so they get a watch of their own
(one per watched namespace, or one cluster-wide), which keeps the data of only the ConfigMaps some
KnowledgeBase names and asks for a reconcile of those KnowledgeBases when one changes. A
ConfigMap not seen yet is read once (:meth:`SourceConfigMaps.get`). After a broken watch the
namespace's entries are dropped and the watch starts over (the API server replays every object as
added), so nothing stale is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection
from typing import Any, Protocol, cast

from lightkube import AsyncClient
from lightkube.resources.core_v1 import ConfigMap

from agentkube.operator.cache import Cache
from agentkube.operator.queueing import Ref

JSON = dict[str, Any]
log = logging.getLogger(__name__)

RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
ALL_NAMESPACES = "*"


class Reader(Protocol):
    async def read(self, kind: str, namespace: str, name: str) -> JSON | None: ...


def named_config_maps(body: JSON) -> list[str]:
    sources = (body.get("spec") or {}).get("sources") or {}
    return [str(c.get("name")) for c in sources.get("configMaps") or [] if c.get("name")]


class SourceConfigMaps:
    def __init__(
        self, client: AsyncClient, cache: Cache, reader: Reader, submit: Callable[[Ref], None]
    ) -> None:
        self.client = client
        self.cache = cache
        self.reader = reader
        self.submit = submit
        self._data: dict[tuple[str, str], JSON | None] = {}

    def _naming(self, namespace: str, name: str) -> list[str]:
        return [
            kb
            for (ns, kb), body in self.cache.items("KnowledgeBase")
            if ns == namespace and name in named_config_maps(body)
        ]

    async def get(self, namespace: str, name: str) -> JSON | None:
        """The ConfigMap's body (``data`` only), from the watch, else read once."""
        key = (namespace, name)
        if key not in self._data:
            live = await self.reader.read("ConfigMap", namespace, name)
            self._data[key] = _kept(live) if live is not None else None
        return self._data[key]

    def on_event(self, kind: str, body: JSON) -> None:
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        users = self._naming(namespace, name)
        if not users:
            self._data.pop((namespace, name), None)
            return
        kept = None if kind == "DELETED" else _kept(body)
        if (namespace, name) in self._data and self._data[(namespace, name)] == kept:
            return
        self._data[(namespace, name)] = kept
        for kb in users:
            self.submit(("KnowledgeBase", namespace, kb))

    async def watch(self, namespace: str) -> None:
        failures = 0
        while True:
            try:
                async for kind, obj in self.client.watch(ConfigMap, namespace=namespace):
                    failures = 0
                    self.on_event(kind, cast(Any, obj).to_dict())
            except asyncio.CancelledError:
                raise
            except Exception as e:  # any break: start over
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                log.warning(
                    "watch of ConfigMaps in %s broke (%s); again in %.0fs", namespace, e, delay
                )
                self._forget(namespace)
                await asyncio.sleep(delay)  # back-off before watching again

    def _forget(self, namespace: str) -> None:
        for key in [k for k in self._data if namespace in (ALL_NAMESPACES, k[0])]:
            del self._data[key]

    @contextlib.asynccontextmanager
    async def watching(self, namespaces: Collection[str]) -> Any:
        """Watch ``namespaces`` (none: all) while the context is open."""
        tasks = [
            asyncio.get_running_loop().create_task(self.watch(ns))
            for ns in (namespaces or [ALL_NAMESPACES])
        ]
        try:
            yield self
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def _kept(body: JSON) -> JSON:
    return {"data": dict(body.get("data") or {})}
