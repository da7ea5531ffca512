"""Errors of the RAG proxy.

    AgentkubeError
    ├── UserError
    │   └── SidecarUserError          a bad flag or template: fix the command line
    │       └── CollectionNotAllowed  a request asked for a collection the proxy was not
    │                                 configured to read (a header may narrow, never widen)
    └── RuntimeFailure
        └── SidecarFailure            something failed while serving
            ├── RetrievalFailed       the vector store or the embedder failed (or timed out);
            │                         fail-open forwards un-enriched, fail-closed answers 503
            └── UpstreamBrokeOff      the upstream ended a streamed response early; the
                                      client's response is broken off too (never a clean end)

Messages are one line naming the thing (flag, collection, store) and the fix.
"""

from __future__ import annotations

from agentkube.errors import RuntimeFailure, UserError


class SidecarUserError(UserError):
    """Bad configuration of the proxy."""


class CollectionNotAllowed(SidecarUserError):
    """A per-request collection header named a collection outside the configured ones."""


class SidecarFailure(RuntimeFailure):
    """The proxy failed at run time."""


class RetrievalFailed(SidecarFailure):
    """Context could not be retrieved for a request."""


class UpstreamBrokeOff(SidecarFailure):
    """The upstream ended a response mid-stream, after its status went to the client."""
