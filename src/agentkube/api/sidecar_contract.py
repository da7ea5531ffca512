"""Facts the RAG proxy, the operator and the runtime share about the sidecar.

The operator renders the proxy into agent pods with these names, ports and flags; the proxy
serves them; the runtime runs the same proxy in process. One module, so the three never drift.
"""

from __future__ import annotations

from typing import Final

from agentkube.api.pod_contract import ENV_NAMESPACE

# `agentkube sidecar rag` (the command line is a contract: docs/rag.md).
DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8081
DEFAULT_TOP_K: Final = 4
CONTAINER_NAME: Final = "rag-proxy"
# Set in an agent pod whose model requests go through the sidecar: the runtime then leaves
# enrichment to it (on one machine, without it, the runtime enriches in process).
ENV_RAG_SIDECAR: Final = "AGENTKUBE_RAG_SIDECAR"
# The memory tenant the proxy reads as: the pod contract's namespace variable.
ENV_MEMORY_NAMESPACE: Final = ENV_NAMESPACE

# Request headers a client may send.
HEADER_RAG: Final = "x-agentkube-rag"  # "off" passes the request through un-enriched
HEADER_COLLECTION: Final = "x-agentkube-rag-collection"  # narrows the configured collections
# Response headers the proxy adds.
HEADER_CHUNKS: Final = "x-agentkube-rag-chunks"  # how many chunks were injected
HEADER_SOURCES: Final = "x-agentkube-rag-sources"  # their sources, comma-separated, in order
HEADER_WARNING: Final = "x-agentkube-rag-warning"  # why a request was not enriched (fail-open)


def proxy_args(
    *,
    upstream: str,
    collections: list[str],
    top_k: int,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    vector_url: str | None = None,
    data_dir: str | None = None,
) -> list[str]:
    """The ``agentkube`` arguments that start the proxy (the image's entrypoint is agentkube)."""
    args = ["sidecar", "rag", "--upstream", upstream]
    for collection in collections:
        args += ["--collection", collection]
    args += ["--host", host, "--port", str(port), "--top-k", str(top_k)]
    if vector_url:
        args += ["--vector-url", vector_url]
    elif data_dir:
        args += ["--data-dir", data_dir]
    return args


# Injection into any pod (the mutating webhook, docs/rag.md): a pod asks for the proxy with
# these annotations, in a namespace labelled for it; its app containers then find the proxy
# through the OpenAI clients' own variable.
ANNOTATION_COLLECTION: Final = "ai.openvn/rag-collection"  # asks for injection
ANNOTATION_UPSTREAM: Final = "ai.openvn/rag-upstream"  # the model's base URL ...
ANNOTATION_MODEL: Final = "ai.openvn/rag-model"  # ... or a Model of the pod's namespace
ANNOTATION_TOP_K: Final = "ai.openvn/rag-top-k"  # optional, as spec.rag.topK
NAMESPACE_OPT_IN_LABEL: Final = "ai.openvn/rag-injection"
NAMESPACE_OPT_IN_VALUE: Final = "enabled"
ENV_OPENAI_BASE_URL: Final = "OPENAI_BASE_URL"
