"""The OpenTelemetry environment variables agentkube reads, and what they mean here.

Standard names only, so any OpenTelemetry tooling (the Collector's docs, the Operator's
auto-instrumentation conventions) applies as is. Importing this module imports no OpenTelemetry:
the operator uses it to render the variables into the pods it creates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

ENV_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
ENV_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
ENV_PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
ENV_SERVICE_NAME = "OTEL_SERVICE_NAME"
ENV_RESOURCE_ATTRIBUTES = "OTEL_RESOURCE_ATTRIBUTES"
ENV_SDK_DISABLED = "OTEL_SDK_DISABLED"
ENV_TRACES_SAMPLER = "OTEL_TRACES_SAMPLER"
ENV_TRACES_SAMPLER_ARG = "OTEL_TRACES_SAMPLER_ARG"
# The GenAI instrumentations' opt-in for prompts, completions and tool arguments in spans.
ENV_CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

# what the pod's resource attributes are made of (set from the downward API)
ENV_POD_NAMESPACE = "OTEL_K8S_NAMESPACE"
ENV_POD_NAME = "OTEL_K8S_POD_NAME"

PROTOCOL = "http/protobuf"  # the one exporter shipped (opentelemetry-exporter-otlp-proto-http)


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True, kw_only=True)
class TelemetrySettings:
    """What the environment asks for: where to export, and whether content goes into spans."""

    endpoint: str | None = None
    """OTLP/HTTP base URL (``.../v1/traces`` is appended) or a full traces URL."""
    traces_url: str | None = None
    capture_content: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> TelemetrySettings:
        if truthy(environ.get(ENV_SDK_DISABLED)):
            return cls()
        base = (environ.get(ENV_ENDPOINT) or "").strip() or None
        traces = (environ.get(ENV_TRACES_ENDPOINT) or "").strip() or None
        if traces is None and base is not None:
            traces = base.rstrip("/") + "/v1/traces"
        return cls(
            endpoint=base,
            traces_url=traces,
            capture_content=truthy(environ.get(ENV_CAPTURE_CONTENT)),
        )

    @property
    def exporting(self) -> bool:
        return self.traces_url is not None


def pod_environment(
    endpoint: str, *, service: str, capture_content: bool = False
) -> list[dict[str, object]]:
    """The ``env`` entries that point a pod's process at the collector ``endpoint``; the pod's
    namespace and name become resource attributes (the downward API, then ``$(VAR)``)."""
    env: list[dict[str, object]] = [
        {"name": ENV_POD_NAMESPACE, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": ENV_POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": ENV_ENDPOINT, "value": endpoint},
        {"name": ENV_PROTOCOL, "value": PROTOCOL},
        {"name": ENV_SERVICE_NAME, "value": service},
        {
            "name": ENV_RESOURCE_ATTRIBUTES,
            "value": f"k8s.namespace.name=$({ENV_POD_NAMESPACE}),k8s.pod.name=$({ENV_POD_NAME})",
        },
    ]
    if capture_content:
        env.append({"name": ENV_CAPTURE_CONTENT, "value": "true"})
    return env
