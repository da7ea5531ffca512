"""A real OTLP/HTTP trace receiver on loopback: what a collector's ``otlp`` receiver does.

It accepts ``POST /v1/traces`` with an ``ExportTraceServiceRequest`` in binary protobuf (gzip
or not), decodes it with opentelemetry-proto's own classes, answers the protobuf
``ExportTraceServiceResponse`` and keeps every span it received. Tests wait on it with
:meth:`OtlpReceiver.wait_for` (a condition, not a sleep).
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

# Span.SpanKind in the OTLP protobuf
INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER = 1, 2, 3, 4, 5
STATUS_ERROR = 2


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    attributes: dict[str, Any]
    start_ns: int
    end_ns: int
    status: int


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, which) if which else None


def decode(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest.FromString(body)
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        service=str(resource.get("service.name", "")),
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        name=span.name,
                        kind=span.kind,
                        attributes={kv.key: _value(kv.value) for kv in span.attributes},
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        status=span.status.code,
                    )
                )
    return spans


class OtlpReceiver:
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                try:
                    spans = decode(body)
                except Exception:  # a malformed export is the exporter's bug: answer 400
                    self.send_error(400)
                    return
                with receiver._changed:
                    receiver.spans += spans
                    receiver.requests += 1
                    receiver._changed.notify_all()
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def wait_for(
        self, predicate: Callable[[list[ReceivedSpan]], bool], timeout_s: float = 60.0
    ) -> list[ReceivedSpan]:
        """The spans received, once ``predicate`` holds of them (AssertionError on timeout)."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(list(self.spans)), timeout_s):
                names = sorted({f"{s.service}:{s.name}" for s in self.spans})
                raise AssertionError(f"the receiver did not get the expected spans; got {names}")
            return list(self.spans)

    def named(self, prefix: str) -> list[ReceivedSpan]:
        with self._changed:
            return [s for s in self.spans if s.name.startswith(prefix)]

    @contextmanager
    def running(self) -> Iterator[OtlpReceiver]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join()


def main() -> None:
    """Serve on loopback in a process of its own (for benchmarks: decoding spans must not take
    the measuring process's time): print the URL, then, on SIGTERM, ``spans N exports M``."""
    import signal
    import sys

    receiver = OtlpReceiver()
    signal.signal(signal.SIGTERM, lambda *_: receiver._server.shutdown())
    print(receiver.url, flush=True)
    thread = threading.Thread(target=receiver._server.serve_forever)
    thread.start()
    thread.join()
    receiver._server.server_close()
    print(f"spans {len(receiver.spans)} exports {receiver.requests}", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
