"""``agentkube sandbox gateway``: serve the sandbox contract over HTTP to agents.

Agents authenticate with their projected ServiceAccount token (``--auth tokenreview``, the
default; see docs/gateway-auth.md) or a token from ``--token-file`` (``--auth static``). Each
agent may run ``--max-concurrent-per-agent`` executions at once; more get HTTP 429.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from agentkube.api.pod_contract import GATEWAY_FIELD_MANAGER, SANDBOX_GATEWAY_AUDIENCE


def gateway(
    backend: Annotated[str, typer.Option("--backend", metavar="local|kubernetes")] = "local",
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8080,
    auth: Annotated[str, typer.Option("--auth", metavar="tokenreview|static")] = "tokenreview",
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="`<token> <name>` lines, for --auth static")
    ] = None,
    audience: Annotated[
        str, typer.Option("--audience", help="audience the agents' tokens must carry")
    ] = SANDBOX_GATEWAY_AUDIENCE,
    max_concurrent: Annotated[
        int, typer.Option("--max-concurrent-per-agent", min=1, help="executions per agent")
    ] = 4,
    pool_size: Annotated[int, typer.Option("--pool-size", min=0, help="warm sandboxes")] = 0,
    namespace: Annotated[
        str, typer.Option("--namespace", help="sandbox namespace (kubernetes)")
    ] = "agentkube-sandbox",
    name: Annotated[
        str, typer.Option("--name", help="gateway name, labels what it creates (kubernetes)")
    ] = GATEWAY_FIELD_MANAGER,
    image: Annotated[
        str, typer.Option("--image", help="sandbox image with python3 and bash (kubernetes)")
    ] = "python:3.12-slim",
    runtime_class: Annotated[
        str,
        typer.Option(
            "--runtime-class",
            help="RuntimeClass of sandbox pods: auto (gvisor if the cluster has it), a name, "
            "or none (the nodes' default runtime) (kubernetes)",
        ),
    ] = "auto",
    node_selector: Annotated[
        list[str] | None, typer.Option("--node-selector", help="key=value, repeatable")
    ] = None,
    toleration: Annotated[
        list[str] | None, typer.Option("--toleration", help="key=value:Effect, repeatable")
    ] = None,
    isolation_wait: Annotated[
        float,
        typer.Option(
            "--isolation-wait",
            help="seconds a sandbox pod waits for its NetworkPolicy to cut it off the network "
            "before it refuses to run; 0 runs without checking (kubernetes)",
        ),
    ] = 30.0,
    kubeconfig: Annotated[Path | None, typer.Option("--kubeconfig")] = None,
    policy: Annotated[
        Path | None,
        typer.Option("--policy", help="YAML file of max_* limits per execution (docs/security.md)"),
    ] = None,
    allow_caller: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-caller", help="namespace/serviceaccount pattern allowed to run, repeatable"
        ),
    ] = None,
) -> None:
    """Serve the sandbox contract over HTTP (POST /v1/executions) until SIGTERM."""
    import uvicorn

    from agentkube.bounded_headers import bounded_headers
    from agentkube.cli.checks import check_listen
    from agentkube.gateway.app import GatewaySettings, create_app
    from agentkube.gateway.building import (
        GatewayOptions,
        open_authenticator,
        open_backend,
        open_policy,
        parse_pairs,
        parse_toleration,
    )
    from agentkube.gateway.errors import GatewayConfigError
    from agentkube.sandbox.kubernetes.rendering import PodSettings

    check_listen(host, port)
    if backend not in ("local", "kubernetes"):
        raise GatewayConfigError(f"--backend {backend!r} is not known: use local or kubernetes")
    if auth not in ("tokenreview", "static"):
        raise GatewayConfigError(f"--auth {auth!r} is not known: use tokenreview or static")
    if isolation_wait < 0:
        raise GatewayConfigError(f"--isolation-wait {isolation_wait:g} is negative: use 0 or more")
    defaults = PodSettings()
    pods = PodSettings(
        namespace=namespace,
        gateway=name,
        image=image,
        runtime_class_name=None if runtime_class == "none" else runtime_class,
        node_selector=parse_pairs(node_selector, "--node-selector")
        if node_selector
        else defaults.node_selector,
        tolerations=[parse_toleration(t) for t in toleration]
        if toleration
        else defaults.tolerations,
        isolation_wait_s=isolation_wait or None,
    )
    options = GatewayOptions(
        backend=backend,  # type: ignore[arg-type]  # checked just above
        auth=auth,  # type: ignore[arg-type]
        token_file=token_file,
        audience=audience,
        pool_size=pool_size,
        pods=pods,
        kubeconfig=kubeconfig,
        policy=open_policy(policy),
    )
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    client = None
    if backend == "kubernetes" or auth == "tokenreview":
        from agentkube.gateway.building import kube_client

        client = kube_client(kubeconfig)
    app = create_app(
        open_backend(options, client),
        open_authenticator(options, client),
        GatewaySettings(
            max_concurrent_per_agent=max_concurrent,
            policy=options.policy,
            allowed_callers=tuple(allow_caller or ()),
        ),
        kube_client=client,
    )
    from agentkube.telemetry.tracing import setup_tracing

    setup_tracing("agentkube-sandbox-gateway")  # on only with OTEL_EXPORTER_OTLP_ENDPOINT set
    uvicorn.run(app, host=host, port=port, log_level="warning", http=bounded_headers())
