"""One tracer provider per process, installed only when something will read its spans.

:func:`setup_tracing` is called once by each entry point (``agentkube run``, ``agent serve``,
the gateway, the RAG proxy) with the process's service name. With ``OTEL_EXPORTER_OTLP_ENDPOINT``
(or ``..._TRACES_ENDPOINT``) set it installs the SDK's provider with a batching OTLP/HTTP
exporter; ``agentkube run --trace`` adds an in-process recorder. Otherwise nothing is installed
and :func:`tracer` hands out the API's no-op tracer: a span then costs one function call and
the SDK is never imported.

The provider is kept here, not made OpenTelemetry's global one: only agentkube's own spans and
pydantic-ai's (which is given the provider) are recorded, not those of every library that
happens to call ``trace.get_tracer``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from opentelemetry import trace

from agentkube.telemetry.settings import (
    ENV_RESOURCE_ATTRIBUTES,
    ENV_SERVICE_NAME,
    TelemetrySettings,
)

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

INSTRUMENTATION_NAME = "agentkube"


@dataclass(frozen=True, kw_only=True)
class Tracing:
    """The process's tracing: off (no provider), exporting, recording, or both."""

    settings: TelemetrySettings = field(default_factory=TelemetrySettings)
    provider: TracerProvider | None = None

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    @property
    def capture_content(self) -> bool:
        return self.settings.capture_content

    def tracer(self) -> trace.Tracer:
        return self._tracer

    @cached_property
    def _tracer(self) -> trace.Tracer:
        # Once per provider: the SDK's get_tracer builds a new Tracer and scope on every call,
        # and every agentkube span asks for one.
        if self.provider is None:
            return _NO_OP
        return self.provider.get_tracer(INSTRUMENTATION_NAME)

    @contextmanager
    def task(self, name: str) -> Iterator[bool]:
        """One task's sampling decision, taken once at its root (see
        :mod:`~agentkube.telemetry.sampling`): yields whether the task is recorded. A task that
        continues a trace follows its parent; one that starts a trace draws from the sampler
        and, drawn out, runs within a non-recording span that propagates ``sampled=0``."""
        parent = trace.get_current_span().get_span_context()
        if self.provider is None or parent.is_valid:
            yield self.provider is not None and parent.trace_flags.sampled
            return
        from agentkube.telemetry.sampling import drawn_task

        with drawn_task(self.provider, name) as sampled:
            yield sampled

    def flush(self, timeout_s: float = 5.0) -> None:
        if self.provider is not None:
            self.provider.force_flush(int(timeout_s * 1000))

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()


_NO_OP = trace.NoOpTracer()
_current = Tracing()


def resource_attributes(service: str, environ: Mapping[str, str]) -> dict[str, str]:
    """``service.name`` (``OTEL_SERVICE_NAME`` wins) and ``OTEL_RESOURCE_ATTRIBUTES``' pairs."""
    attributes: dict[str, str] = {}
    for pair in (environ.get(ENV_RESOURCE_ATTRIBUTES) or "").split(","):
        key, sep, value = pair.partition("=")
        if sep and key.strip():
            attributes[key.strip()] = value.strip()
    attributes["service.name"] = (environ.get(ENV_SERVICE_NAME) or "").strip() or service
    return attributes


def setup_tracing(
    service: str,
    environ: Mapping[str, str] | None = None,
    *,
    recorder: SpanProcessor | None = None,
) -> Tracing:
    """Install this process's tracing from ``environ`` (default ``os.environ``); idempotent
    per call: a later call replaces the earlier provider (after flushing it)."""
    global _current
    environ = os.environ if environ is None else environ
    settings = TelemetrySettings.from_env(environ)
    previous = _current
    if not settings.exporting and recorder is None:
        _current = Tracing(settings=settings)
    else:
        _current = Tracing(settings=settings, provider=_provider(service, environ, settings))
        assert _current.provider is not None
        if recorder is not None:
            _current.provider.add_span_processor(recorder)
    previous.shutdown()
    return _current


def _provider(
    service: str, environ: Mapping[str, str], settings: TelemetrySettings
) -> TracerProvider:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from agentkube.telemetry.sampling import TaskRootSampler

    # No sampler given: the SDK's own from OTEL_TRACES_SAMPLER(_ARG), every trace by default,
    # wrapped (before any tracer copies it) so a task's root span keeps the task's decision.
    provider = TracerProvider(
        resource=Resource.create(resource_attributes(service, environ)),
        shutdown_on_exit=True,  # the batch left at exit is flushed
    )
    provider.sampler = TaskRootSampler(provider.sampler)
    if settings.traces_url is not None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(settings.traces_url)))
    return provider


def current() -> Tracing:
    return _current


def tracer() -> trace.Tracer:
    """agentkube's tracer: the installed provider's, or the no-op one."""
    return _current.tracer()
