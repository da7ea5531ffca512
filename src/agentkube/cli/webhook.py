"""``agentkube sidecar webhook``: the admission webhook that injects the RAG proxy into pods.

    agentkube sidecar webhook --tls-cert FILE --tls-key FILE [--host 127.0.0.1] [--port 8443]
        [--config OPERATOR-CONFIG.yaml]

Serves ``POST /inject-rag`` (AdmissionReview v1) over TLS, and ``GET /healthz``. The proxy it
injects is the operator's (``ragSidecar`` and ``agentImage`` of ``--config``); Models named by
``ai.openvn/rag-model`` are read with the in-cluster ServiceAccount, else ``$KUBECONFIG``.
Exit 2 on a bad flag or an unreadable certificate, before the server starts.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Annotated

import typer

from agentkube.errors import UserError


def serve(
    tls_cert: Annotated[Path, typer.Option("--tls-cert", help="serving certificate (PEM)")],
    tls_key: Annotated[Path, typer.Option("--tls-key", help="its private key (PEM)")],
    host: Annotated[str, typer.Option("--host", help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8443,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="operator configuration YAML (ragSidecar, agentImage)"),
    ] = None,
) -> None:
    """Serve the mutating webhook that injects the RAG proxy into annotated pods."""
    from agentkube.cli.checks import check_listen, require_k8s_extra

    require_k8s_extra("agentkube sidecar webhook")
    check_tls(tls_cert, tls_key)
    check_listen(host, port)

    import uvicorn

    from agentkube.admission.webhook import KubeModels, create_app
    from agentkube.bounded_headers import bounded_headers
    from agentkube.operator.config import load_config
    from agentkube.operator.running import make_client

    settings = load_config(config)
    # The API server waits for the webhook at most timeoutSeconds (5 in deploy/webhook).
    client = make_client(settings, timeout_seconds=3.0)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("httpx", "httpx2", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    uvicorn.run(
        create_app(settings, KubeModels(client)),
        host=host,
        port=port,
        http=bounded_headers(),
        ssl_certfile=str(tls_cert),
        ssl_keyfile=str(tls_key),
        log_level="warning",
    )


def check_tls(cert: Path, key: Path) -> None:
    """One line naming the flag when the pair cannot serve TLS (uvicorn would print a trace)."""
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not path.is_file():
            raise UserError(
                f"{flag} {path}: no such file; pass the PEM file of the webhook's Secret"
            )
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        raise UserError(
            f"--tls-cert {cert} / --tls-key {key}: not a usable certificate and key ({e}); "
            "pass the PEM pair of the webhook's Secret"
        ) from None
