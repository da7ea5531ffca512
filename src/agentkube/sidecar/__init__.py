"""The RAG sidecar: an OpenAI-compatible proxy that enriches every question with knowledge.

``agentkube sidecar rag --upstream URL --collection NAME`` serves ``/v1/chat/completions`` in
front of a model: it takes the user turns since the last assistant reply (also when the request
carries ``tools``), retrieves the nearest chunks of the configured collections, injects them as
one system message with numbered sources, and forwards the request — streaming or not — to the
upstream. Every other path is forwarded unchanged. A vector store that is down fails open
(un-enriched, a warning header, a metric) unless ``--fail-closed``.

Modules: :mod:`enrichment` (pure: the query, the message, the narrowing rule),
:mod:`retrieval` (the :class:`~agentkube.sidecar.retrieval.Retriever` seam over
:mod:`agentkube.memory`), :mod:`forwarding` (the enrichment step: what goes upstream for one
chat request), :mod:`proxy` (the plain ASGI app), :mod:`upstream` (its LIFO pool of httpcore
connections to the one upstream), :mod:`local` (the same app in process on loopback, for
``spec.rag`` on one machine), :mod:`metrics`. Errors: :mod:`agentkube.sidecar.errors`.
"""
