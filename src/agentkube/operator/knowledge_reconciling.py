"""One level-triggered reconcile of a KnowledgeBase (:mod:`agentkube.operator.knowledge`).

1. Without a vector store configured (``memory.vector``) there is nothing to ingest into: the
   status says so and no finalizer is added.
2. Otherwise the finalizer is added, the source ConfigMaps are read (from their watch) and the
   source hash computed. A hash equal to ``status.sourceHash`` was ingested (or failed) already:
   nothing is done, no request is sent.
3. A new hash: the manifest ConfigMap, the NetworkPolicy and the Job for that hash are applied
   (an ingestion Job of an older hash still running is deleted: one writer per collection).
   While the Job runs the KnowledgeBase is ``Ingesting``; once it completed its pod's report
   gives ``documents``, ``chunks`` and ``lastSyncTime``, and it is ``Ready``; a failed Job makes
   it ``Failed`` with the Job's reason, until a source changes.
4. Deleted: the removal Job deletes the collection, then the finalizer is released. A removal
   that failed is run again with back-off (the finalizer stays: the collection is still there).
"""

from __future__ import annotations

import logging
from typing import Any, cast

from lightkube import AsyncClient
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Pod
from lightkube.types import CascadeType, PatchType
from pydantic import ValidationError

from agentkube.api.loading import describe
from agentkube.api.models import KnowledgeBase
from agentkube.operator.applying import KnowledgeBaseResource, _not_found, _translated
from agentkube.operator.cache import Cache
from agentkube.operator.config import OperatorConfig
from agentkube.operator.errors import (
    NamespaceTerminating,
    ReconcileError,
    RejectedByApi,
)
from agentkube.operator.knowledge import (
    FINALIZER,
    KNOWLEDGEBASE_LABEL,
    SOURCE_HASH_LABEL,
    SourceMissing,
    job_name,
    job_outcome,
    pod_failure,
    pod_report,
    removal_job_name,
    render_ingestion,
    render_removal,
    selected_data,
    source_hash,
)
from agentkube.operator.knowledge_watch import SourceConfigMaps
from agentkube.operator.status import Check, as_conditions, timestamp
from agentkube.operator.writing import TERMINATING, Writer, Writes

JSON = dict[str, Any]
log = logging.getLogger(__name__)

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def _checks(ready: Check, ingesting: bool, failed: Check | None) -> list[Check]:
    return [
        ready,
        Check(
            type="Ingesting",
            ok=ingesting,
            reason="JobRunning" if ingesting else "Idle",
            message="the ingestion Job is running" if ingesting else "",
        ),
        failed or Check(type="Failed", ok=False, reason="NoFailure", message=""),
    ]


class KnowledgeBases:
    def __init__(
        self,
        *,
        client: AsyncClient,
        cache: Cache,
        config: OperatorConfig,
        writer: Writer,
        sources: SourceConfigMaps,
    ) -> None:
        self.client = client
        self.cache = cache
        self.config = config
        self.writer = writer
        self.writes = Writes(cache, writer)
        self.sources = sources

    async def reconcile(self, body: JSON, namespace: str) -> bool:
        """Reconcile one cached KnowledgeBase; True when it should be retried later."""
        try:
            kb = KnowledgeBase.model_validate(
                {k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")}
            )
        except ValidationError as e:
            return await self._failed(body, "InvalidSpec", describe(e))
        try:
            if body["metadata"].get("deletionTimestamp"):
                return await self._finalize(kb, body, namespace)
            if self.config.memory is None or self.config.memory.vector is None:
                ready = Check(
                    type="Ready",
                    ok=False,
                    reason="NoVectorStore",
                    message="the operator has no vector store configured (memory.vector in its "
                    "configuration, docs/memory.md); nothing to ingest into",
                )
                return await self._finish(body, _checks(ready, False, None), {})
            body = await self._ensure_finalizer(body)
            return await self._ingest(kb, body, namespace)
        except NamespaceTerminating:
            if body["metadata"].get("deletionTimestamp"):
                await self._release(body)  # no Job can run here any more
            return False
        except ReconcileError as e:
            log.warning("%s", e)
            return True

    async def _ingest(self, kb: KnowledgeBase, body: JSON, namespace: str) -> bool:
        live = {
            c.name: await self.sources.get(namespace, c.name) for c in kb.spec.sources.config_maps
        }
        try:
            source = source_hash(kb, selected_data(kb, live))
        except SourceMissing as e:  # the ConfigMap's watch brings it back here
            return await self._failed(body, "SourceMissing", str(e))
        status = body.get("status") or {}
        if status.get("sourceHash") == source:
            return False  # ingested (or failed) already: a changed source makes a new hash
        name = job_name(kb.metadata.name, source)
        await self._supersede(namespace, kb.metadata.name, source)
        applied = await self.writes.apply_all(render_ingestion(kb, namespace, self.config, source))
        if applied.check == TERMINATING:
            return False
        if not applied.check.ok:
            return (
                await self._failed(body, applied.check.reason, applied.check.message)
                or applied.retry
            )
        return await self._report(body, namespace, name, source)

    async def _report(self, body: JSON, namespace: str, name: str, source: str) -> bool:
        """The status from the ingestion Job ``name``: running, failed, or its report."""
        outcome = job_outcome(self.cache.get("Job", namespace, name))
        if not outcome.done:
            ready = Check(
                type="Ready", ok=False, reason="Ingesting", message=f"Job {name} is running"
            )
            return await self._finish(body, _checks(ready, True, None), {})
        if outcome.failed:
            said = pod_failure(await self._pods(namespace, name))
            message = f"Job {name}: {outcome.message or outcome.reason}" + (
                f": {said}" if said else ""
            )
            return await self._failed(body, outcome.reason, message, sourceHash=source)
        report = pod_report(await self._pods(namespace, name))
        if report is None:
            message = f"Job {name} completed without its report (the pod's termination message)"
            return await self._failed(body, "NoReport", message, sourceHash=source)
        ready = Check(
            type="Ready",
            ok=True,
            reason="Ingested",
            message=f"{report['documents']} documents, {report['chunks']} chunks "
            f"({report['added']} added, {report['removed']} removed) by Job {name}",
        )
        extra = {
            "documents": report["documents"],
            "chunks": report["chunks"],
            "lastSyncTime": timestamp(self.writer.clock()),
            "sourceHash": source,
        }
        return await self._finish(body, _checks(ready, False, None), extra)

    async def _finalize(self, kb: KnowledgeBase, body: JSON, namespace: str) -> bool:
        if FINALIZER not in (body["metadata"].get("finalizers") or []):
            return False
        applied = None
        if self.config.memory is not None and self.config.memory.vector is not None:
            applied = await self.writes.apply_all(render_removal(kb, namespace, self.config))
        if applied is None or applied.check == TERMINATING:
            # No vector store (nothing was ingested), or no Job can run here any more.
            await self._release(body)
            return False
        name = removal_job_name(kb.metadata.name)
        if not applied.check.ok:
            return await self._failed(body, applied.check.reason, applied.check.message) or True
        outcome = job_outcome(self.cache.get("Job", namespace, name))
        if not outcome.done:
            ready = Check(type="Ready", ok=False, reason="Removing", message=f"Job {name} runs")
            return await self._finish(body, _checks(ready, False, None), {})
        if outcome.failed:
            # Run it again (with back-off): the collection is still there.
            await self._delete_job(namespace, name)
            message = f"removing collection {kb.spec.collection}: Job {name}: {outcome.message}"
            await self._failed(body, outcome.reason, message)
            return True
        await self._release(body)
        log.info(
            "removed collection %s of KnowledgeBase %s/%s",
            kb.spec.collection,
            namespace,
            kb.metadata.name,
        )
        return False

    # ------------------------------------------------------------------ status

    async def _failed(self, body: JSON, reason: str, message: str, **extra: Any) -> bool:
        ready = Check(type="Ready", ok=False, reason=reason, message=message)
        failed = Check(type="Failed", ok=True, reason=reason, message=message)
        return await self._finish(body, _checks(ready, False, failed), extra)

    async def _finish(self, body: JSON, checks: list[Check], extra: JSON) -> bool:
        previous = (body.get("status") or {}).get("conditions") or []
        generation = body["metadata"].get("generation")
        wanted = {
            "conditions": as_conditions(checks, previous, generation, self.writer.clock()),
            "observedGeneration": generation,
            **extra,
        }
        outcome = await self.writes.status(body, wanted)
        if not outcome.written:
            return outcome.retry
        # An Event when it turns Failed, or fails for another reason.
        failed = next(c for c in wanted["conditions"] if c["type"] == "Failed")
        before: JSON = next((c for c in previous if c.get("type") == "Failed"), {})
        if failed["status"] == "True" and (before.get("status"), before.get("reason")) != (
            "True",
            failed["reason"],
        ):
            await self.writer.post_event(
                body, type="Warning", reason=failed["reason"], message=failed["message"]
            )
        return False

    # ------------------------------------------------------------------ API

    async def _ensure_finalizer(self, body: JSON) -> JSON:
        """``body`` with the finalizer (added when missing)."""
        finalizers = list(body["metadata"].get("finalizers") or [])
        if FINALIZER in finalizers:
            return body
        return await self._patch_finalizers(body, [*finalizers, FINALIZER])

    async def _release(self, body: JSON) -> None:
        finalizers = list(body["metadata"].get("finalizers") or [])
        if FINALIZER in finalizers:
            await self._patch_finalizers(body, [f for f in finalizers if f != FINALIZER])

    async def _patch_finalizers(self, body: JSON, finalizers: list[str]) -> JSON:
        meta = body["metadata"]
        # The resourceVersion makes it a compare-and-swap: another finalizer added meanwhile
        # is a conflict (retried), never overwritten.
        patch = {
            "metadata": {"finalizers": finalizers, "resourceVersion": meta.get("resourceVersion")}
        }
        what = f"set finalizers of KnowledgeBase {meta['namespace']}/{meta['name']}"
        async with _translated(what):
            live = await self.client.patch(
                KnowledgeBaseResource,
                meta["name"],
                patch,
                namespace=meta["namespace"],
                patch_type=PatchType.MERGE,
            )
        updated = dict(cast(Any, live).to_dict())
        self.cache.put(updated, "KnowledgeBase")
        log.info("%s: %s", what, finalizers)
        return {**body, "metadata": {**meta, **updated["metadata"]}}

    async def _pods(self, namespace: str, job: str) -> list[JSON]:
        async with _translated(f"list pods of Job {namespace}/{job}"):
            pods = [
                dict(cast(Any, p).to_dict())
                async for p in self.client.list(
                    Pod, namespace=namespace, labels={JOB_NAME_LABEL: job}
                )
            ]
        return pods

    async def _supersede(self, namespace: str, kb: str, source: str) -> None:
        """Delete this KnowledgeBase's ingestion Jobs of other hashes that still run."""
        for (ns, name), job in self.cache.items("Job"):
            labels = job["metadata"].get("labels") or {}
            if ns != namespace or labels.get(KNOWLEDGEBASE_LABEL) != kb:
                continue
            if labels.get(SOURCE_HASH_LABEL) in (None, source) or job_outcome(job).done:
                continue
            await self._delete_job(namespace, name)

    async def _delete_job(self, namespace: str, name: str) -> None:
        try:
            async with _translated(f"delete Job {namespace}/{name}"):
                await self.client.delete(
                    Job, name, namespace=namespace, cascade=CascadeType.BACKGROUND
                )
        except RejectedByApi as e:
            if not _not_found(e):
                raise
        self.cache.remove("Job", namespace, name)
        log.info("deleted Job %s/%s", namespace, name)
