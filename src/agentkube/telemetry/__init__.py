"""OpenTelemetry tracing for every agentkube process, on only when a collector is named.

* :mod:`~agentkube.telemetry.settings` — the standard ``OTEL_*`` variables read once (no
  OpenTelemetry import: the operator renders them into pods from here);
* :mod:`~agentkube.telemetry.tracing` — :func:`setup_tracing` installs a tracer provider that
  exports OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (or records in process for
  ``agentkube run --trace``); otherwise every span is the API's no-op and costs nothing;
* :mod:`~agentkube.telemetry.sampling` — one sampling decision per task, taken at its root, so
  a task the sampler leaves out runs without pydantic-ai's instrumentation;
* :mod:`~agentkube.telemetry.propagation` — W3C trace context in and out of HTTP headers, A2A
  message metadata and queued task records;
* :mod:`~agentkube.telemetry.recording` — the in-process span recorder and its tree.

Span names and attributes follow the OpenTelemetry GenAI semantic conventions; the agent loop's
spans (``invoke_agent``, ``chat``, ``execute_tool``) are pydantic-ai's own instrumentation.
docs/observability.md lists every span and metric.
"""
