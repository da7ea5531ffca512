"""Hostile-load benchmark: what bad clients cost the agent API and the sandbox gateway.

    .venv/bin/python benchmarks/hostile_bench.py [--bodies 4] [--slow 200] [--floods 8]

Starts the real servers as a user does — `agentkube agent serve examples/seed-agent.yaml`
(offline model) and `agentkube sandbox gateway --backend local --auth static` — each its own
process, and against each, one attack after another:

- refusal latency of a declared 200 MB `Content-Length` (413 before the body), p50/p95;
- 4 clients streaming 200 MB chunked bodies at once (413 at the cap; bytes the server took);
- 200 slow-loris connections dripping header bytes (closed at the header deadline);
- lone-surrogate JSON (422, not 500);
- for the gateway, 8 executions at once each flooding stdout to the policy's output cap.

Prints each server's resident memory before, its peak (VmHWM) after every attack, and the
goal: under 256 MB throughout (docs/security.md, Bounded servers).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from measuring import percentile  # noqa: E402

MB = 1_000_000
CHUNK = b"x" * 65536
TOKEN = "hostile-bench-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no {field} for pid {pid}")


@contextmanager
def server(argv: list[str], port: int, ready: str) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "agentkube", *argv, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{argv[:2]} did not become ready")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{ready}", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


def raw(port: int, head: bytes, timeout: float = 30) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(head)
    return sock


def status_of(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return 0
        data += chunk
    return int(data.split(b" ", 2)[1])


def declared_refusals(port: int, path: str, runs: int) -> list[float]:
    """Milliseconds from sending a 200 MB Content-Length to reading the 413."""
    times = []
    for _ in range(runs):
        head = (
            f"POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n"
            f"content-type: application/json\r\ncontent-length: {200 * MB}\r\n\r\n"
        ).encode()
        started = time.perf_counter()
        sock = raw(port, head)
        code = status_of(sock)
        times.append((time.perf_counter() - started) * 1000)
        sock.close()
        if code != 413:
            raise SystemExit(f"declared 200 MB body: {code}, not 413")
    return times


def streamed_body(port: int, path: str) -> tuple[int, int]:
    """Stream a 200 MB chunked body; (the status answered, bytes the server accepted)."""
    head = (
        f"POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n"
        "content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    ).encode()
    sock = raw(port, head)
    sent = 0
    try:
        while sent < 200 * MB:
            sock.sendall(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))
            sent += len(CHUNK)
    except (BrokenPipeError, ConnectionResetError):
        pass
    sock.settimeout(30)
    try:
        code = status_of(sock)
    except OSError:
        code = 0
    sock.close()
    return code, sent


def slow_loris(port: int, connections: int, seconds: float) -> int:
    """Open connections that drip header bytes; how many the server closed within seconds."""
    socks = [
        raw(port, b"GET /healthz HTTP/1.1\r\nhost: x\r\n", timeout=1) for _ in range(connections)
    ]
    closed: set[int] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(closed) < connections:
        for i, sock in enumerate(socks):
            if i in closed:
                continue
            try:
                sock.sendall(b"x")
                sock.setblocking(False)
                if sock.recv(1) == b"":
                    closed.add(i)
            except BlockingIOError:
                pass
            except OSError:
                closed.add(i)
            finally:
                sock.setblocking(True)
        time.sleep(0.5)
    for sock in socks:
        sock.close()
    return len(closed)


def surrogate(port: int, path: str) -> int:
    body = b'{"task": "\\ud800", "code": "\\ud800"}'
    response = httpx.post(
        f"http://127.0.0.1:{port}{path}",
        content=body,
        headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/json"},
    )
    return response.status_code


def floods(port: int, count: int) -> list[int]:
    code = "import sys\nline = 'x' * 65536\nwhile True:\n    sys.stdout.write(line)\n"
    request = {"code": code, "limits": {"output_bytes": 4 * 1024 * 1024, "timeout_s": 20}}

    def one() -> int:
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/executions",
            json=request,
            headers={"authorization": f"Bearer {TOKEN}"},
            timeout=120,
        )
        return len(response.content)

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: one(), range(count)))


def attack(name: str, port: int, pid: int, path: str, args: argparse.Namespace) -> None:
    print(f"\n{name}: RSS at start {rss_mb(pid):.0f} MB")
    refusals = declared_refusals(port, path, 20)
    print(
        f"  declared 200 MB body -> 413 in p50 {statistics.median(refusals):.1f} ms, "
        f"p95 {percentile(refusals, 0.95):.1f} ms; peak RSS {rss_mb(pid, 'VmHWM'):.0f} MB"
    )
    with concurrent.futures.ThreadPoolExecutor(args.bodies) as pool:
        results = list(pool.map(lambda _: streamed_body(port, path), range(args.bodies)))
    codes = sorted({c for c, _ in results})
    taken = max(s for _, s in results) / MB
    print(
        f"  {args.bodies} streamed 200 MB bodies -> {codes}, at most {taken:.0f} MB sent before "
        f"the refusal; peak RSS {rss_mb(pid, 'VmHWM'):.0f} MB"
    )
    closed = slow_loris(port, args.slow, seconds=20)
    print(
        f"  {args.slow} slow-loris connections: {closed} closed within 20 s; "
        f"peak RSS {rss_mb(pid, 'VmHWM'):.0f} MB"
    )
    print(f"  lone surrogates -> {surrogate(port, path)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bodies", type=int, default=4)
    parser.add_argument("--slow", type=int, default=200)
    parser.add_argument("--floods", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tokens = Path(tmp) / "tokens"
        tokens.write_text(f"{TOKEN} hostile\n")
        agent_port, gateway_port = free_port(), free_port()
        agent_argv = ["agent", "serve", str(ROOT / "examples/seed-agent.yaml"), "--data-dir", tmp]
        with server(agent_argv, agent_port, "/readyz") as agent:
            attack("agent API (agent serve)", agent_port, agent.pid, "/v1/tasks", args)
            print(f"  end: peak RSS {rss_mb(agent.pid, 'VmHWM'):.0f} MB")
        gateway_argv = ["sandbox", "gateway", "--backend", "local", "--auth", "static"]
        gateway_argv += [
            "--token-file",
            str(tokens),
            "--max-concurrent-per-agent",
            str(args.floods),
        ]
        with server(gateway_argv, gateway_port, "/healthz") as gateway:
            attack(
                "sandbox gateway (local backend)", gateway_port, gateway.pid, "/v1/executions", args
            )
            sizes = floods(gateway_port, args.floods)
            print(
                f"  {args.floods} executions flooding stdout at once -> responses of "
                f"{min(sizes) / MB:.1f}-{max(sizes) / MB:.1f} MB; "
                f"peak RSS {rss_mb(gateway.pid, 'VmHWM'):.0f} MB"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
