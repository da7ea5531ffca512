"""Fixtures of the telemetry tests: a real OTLP/HTTP receiver, and tracing reset after each."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentkube.telemetry.tracing import setup_tracing
from tests.telemetry.otlp_receiver import OtlpReceiver


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver().running() as running:
        yield running
        setup_tracing("tests", {})  # the last batch goes out while the receiver still listens


@pytest.fixture(autouse=True)
def _tracing_off_afterwards() -> Iterator[None]:
    yield
    setup_tracing("tests", {})  # shuts down (flushes) whatever provider a test installed


# the RAG proxy's knowledge and the stand-in model, as the sidecar tests have them
from tests.sidecar.conftest import embedded_knowledge, embedder, model, proxy  # noqa: E402, F401
