"""``agentkube operator``: run the operator that reconciles Agents and Models."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer


def command(
    config: Annotated[
        Path | None,
        typer.Option("--config", help="operator configuration YAML (pool profiles, images, peers)"),
    ] = None,
    namespace: Annotated[
        list[str] | None,
        typer.Option(
            "--namespace", "-n", help="watch only this namespace (repeatable); default all"
        ),
    ] = None,
    liveness: Annotated[
        str | None,
        typer.Option("--liveness", help="serve a liveness probe, e.g. http://0.0.0.0:8081/healthz"),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="serve Prometheus metrics on this port")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log every apply")] = False,
) -> None:
    """Run the operator: reconcile Agents and Models into Kubernetes objects (until SIGTERM)."""
    from agentkube.cli.checks import require_k8s_extra

    require_k8s_extra("agentkube operator")
    from agentkube.operator.config import load_config
    from agentkube.operator.running import Operator, make_client, register_metrics

    settings = load_config(config)
    client = make_client(settings)  # a missing kubeconfig is one line, before kopf starts
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "httpx2", "httpcore", "kopf.objects"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    async def main() -> None:
        operator = Operator(config=settings, client=client)
        if metrics_port is not None:
            from prometheus_client import start_http_server

            register_metrics(operator)
            start_http_server(metrics_port)
        await operator.run(namespaces=namespace or (), liveness_endpoint=liveness)

    asyncio.run(main())
