"""What MCP costs: a tool call over MCP vs the same function called directly, and the sandbox's
``run_python`` over MCP vs ``agentkube sandbox exec``, side by side in one run.

    .venv/bin/python benchmarks/mcp_bench.py [--calls 200] [--runs 30]

Part 1 serves ``add(a, b)`` with the official SDK's MCPServer over streamable HTTP on loopback
(uvicorn in a thread) and times, interleaved: the function called directly, the SDK's own client
``call_tool``, and pydantic-ai's ``MCPToolset.direct_call_tool`` (the path an ``mcp:<url>`` tool
takes). Part 2 times ``print(1)``: ``agentkube sandbox exec --json`` (a process per run, as a
tool shelling out pays), ``run_python`` on one long-lived ``agentkube sandbox mcp`` over stdio and
over HTTP, and ``LocalSandbox.execute`` in process (the floor). Part 3 times what an MCPServer
costs: the operator's tools listing (a fresh official-SDK client per listing, as each reconcile
makes) and a ``command`` MCPServer's start on one machine (``agentkube sandbox mcp`` as a stdio
subprocess of pydantic-ai's toolset, connected and listed). Prints p50/p95 in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastmcp.client.transports import StdioTransport
from mcp import Client, StdioServerParameters
from mcp.server.mcpserver import MCPServer
from measuring import percentile
from pydantic_ai.mcp import MCPToolset

from agentkube.operator.mcp_discovery import list_tools
from agentkube.sandbox import ExecutionRequest
from agentkube.sandbox.local import LocalSandbox

AGENTKUBE = [sys.executable, "-m", "agentkube"]


def add(a: int, b: int) -> int:
    return a + b


@contextmanager
def served_add() -> Iterator[str]:
    server = MCPServer("bench", log_level="WARNING")
    server.tool()(add)
    config = uvicorn.Config(
        server.streamable_http_app(), host="127.0.0.1", port=0, log_level="warning"
    )
    web = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(web.serve()), daemon=True)
    thread.start()
    while not web.started:
        time.sleep(0.02)
    port = web.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        web.should_exit = True
        thread.join(timeout=10)


@contextmanager
def sandbox_mcp_http() -> Iterator[str]:
    process = subprocess.Popen(
        [*AGENTKUBE, "sandbox", "mcp", "--http", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    line = process.stderr.readline()
    try:
        if not line.startswith("serving MCP at "):
            raise SystemExit(f"agentkube sandbox mcp --http did not start: {line}")
        yield line.removeprefix("serving MCP at ").strip()
    finally:
        process.terminate()
        process.wait(timeout=20)
        process.stderr.close()


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await call()
    return (time.perf_counter() - start) * 1000


def row(name: str, samples: list[float]) -> str:
    return f"| {name} | {percentile(samples, 0.5):.3f} | {percentile(samples, 0.95):.3f} |"


async def tool_call_overhead(calls: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"direct": [], "sdk": [], "toolset": []}
    with served_add() as url:
        async with Client(url) as client, MCPToolset(url) as toolset:

            async def direct() -> None:
                assert add(2, 3) == 5

            async def sdk() -> None:
                result = await client.call_tool("add", {"a": 2, "b": 3})
                assert result.structured_content == {"result": 5}, result

            async def through_toolset() -> None:
                assert await toolset.direct_call_tool("add", {"a": 2, "b": 3}) == 5

            for _ in range(10):  # warm up connections and code paths
                await sdk()
                await through_toolset()
            for _ in range(calls):
                samples["direct"].append(await timed(direct))
                samples["sdk"].append(await timed(sdk))
                samples["toolset"].append(await timed(through_toolset))
    return samples


def exec_once() -> None:
    out = subprocess.run(
        [*AGENTKUBE, "sandbox", "exec", "--json", "-"],
        input="print(1)",
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out)["stdout"] == "1\n", out


def _printed_one(result: Any) -> None:
    assert not result.is_error and result.structured_content["stdout"] == "1\n", result


async def run_python_paths(runs: int) -> dict[str, list[float]]:
    names = ["sandbox exec (process per run)", "MCP stdio", "MCP HTTP", "LocalSandbox in process"]
    samples: dict[str, list[float]] = {name: [] for name in names}
    stdio = StdioServerParameters(
        command=sys.executable, args=["-m", "agentkube", "sandbox", "mcp"], env=dict(os.environ)
    )
    local = LocalSandbox()
    try:
        with sandbox_mcp_http() as url:
            async with Client(stdio) as over_stdio, Client(url) as over_http:

                async def mcp_stdio() -> None:
                    _printed_one(await over_stdio.call_tool("run_python", {"code": "print(1)"}))

                async def mcp_http() -> None:
                    _printed_one(await over_http.call_tool("run_python", {"code": "print(1)"}))

                async def in_process() -> None:
                    result = await local.execute(ExecutionRequest(code="print(1)"))
                    assert result.stdout == "1\n"

                async def shell_out() -> None:
                    await asyncio.to_thread(exec_once)

                paths = [shell_out, mcp_stdio, mcp_http, in_process]
                for path in paths:  # warm up
                    await path()
                for _ in range(runs):
                    for name, path in zip(names, paths, strict=True):
                        samples[name].append(await timed(path))
    finally:
        await local.aclose()
    return samples


async def mcpserver_costs(runs: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"listing": [], "stdio start": []}
    with served_add() as url:

        async def listing() -> None:
            assert await list_tools(url, {}) == ["add"]

        async def stdio_start() -> None:
            transport = StdioTransport(sys.executable, ["-m", "agentkube", "sandbox", "mcp"])
            async with MCPToolset(transport, init_timeout=30) as toolset:
                assert len(await toolset.list_tools()) == 2

        await listing()
        for _ in range(runs):
            samples["listing"].append(await timed(listing))
            if len(samples["stdio start"]) < max(3, runs // 3):
                samples["stdio start"].append(await timed(stdio_start))
    return samples


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    overhead = await tool_call_overhead(args.calls)
    print(f"\nadd(a, b): {args.calls} calls each, interleaved (ms)\n")
    print("| path | p50 | p95 |\n|---|---|---|")
    print(row("called directly", overhead["direct"]))
    print(row("MCP, official SDK client, streamable HTTP", overhead["sdk"]))
    print(row("MCP, pydantic-ai MCPToolset (mcp:<url> tools)", overhead["toolset"]))
    paths = await run_python_paths(args.runs)
    print(f"\nprint(1): {args.runs} runs each, interleaved (ms)\n")
    print("| path | p50 | p95 |\n|---|---|---|")
    for name, samples in paths.items():
        print(row(name, samples))
    costs = await mcpserver_costs(args.runs)
    print(f"\nMCPServer: {args.runs} listings, {len(costs['stdio start'])} stdio starts (ms)\n")
    print("| path | p50 | p95 |\n|---|---|---|")
    print(row("the operator's tools listing (new client each time)", costs["listing"]))
    print(row("a command server's start: agentkube sandbox mcp over stdio", costs["stdio start"]))
    print(f"\nload at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
