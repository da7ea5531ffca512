"""The collector's ``OTEL_*`` variables in the pods the operator renders (pure).

With ``telemetry:`` in the operator config every container of an Agent's pod (the runtime and
its RAG proxy) gets ``OTEL_EXPORTER_OTLP_ENDPOINT`` and friends, its own ``OTEL_SERVICE_NAME``
(the agent's name; ``<agent>-<container>`` for the others) and the pod's namespace and name as
resource attributes; without it the pod spec is unchanged.
"""

from __future__ import annotations

from agentkube.api.models import Agent
from agentkube.operator.config import OperatorConfig
from agentkube.operator.naming import JSON
from agentkube.telemetry.settings import pod_environment


def with_telemetry(spec: JSON, agent: Agent, config: OperatorConfig) -> JSON:
    """``spec`` (a pod spec) with the collector's variables in every container."""
    telemetry = config.telemetry
    if telemetry is None or telemetry.endpoint is None:
        return spec
    name = agent.metadata.name
    out = dict(spec)
    for key in ("initContainers", "containers"):
        containers = []
        for i, container in enumerate(spec.get(key) or []):
            service = name if key == "containers" and i == 0 else f"{name}-{container['name']}"
            env = pod_environment(
                telemetry.endpoint,
                service=service,
                capture_content=telemetry.capture_content,
            )
            containers.append({**container, "env": [*container.get("env", []), *env]})
        if containers:
            out[key] = containers
    return out
