"""Admission webhooks: the RAG proxy injected into any annotated pod (docs/rag.md)."""
