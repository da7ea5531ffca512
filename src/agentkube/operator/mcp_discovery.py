"""Listing an MCPServer's tools with the official MCP client, for its status.

The operator connects to the server's URL over streamable HTTP (the SDK negotiates the protocol
revision down as the server needs), with the request headers of ``headersFrom`` read from their
Secret (one ``get``, nothing cached), lists the tools page by page and disconnects. Every
failure is one :class:`DiscoveryFailed` sentence naming what went wrong; the reconcile reports it
as ``ToolsDiscovered=False`` and retries with back-off.

:class:`ToolDiscovery` is the seam: the reconciler calls it, the operator wires
:class:`LiveDiscovery` (the API server for Secrets, the network for the server).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Protocol

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.resources.core_v1 import Secret
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from agentkube.api.mcpservers import HeadersFrom

MAX_PAGES = 20
MAX_TOOLS = 200  # a status is not a catalogue: the names beyond are left out


class DiscoveryFailed(Exception):
    """The server's tools could not be listed; the message is one sentence."""


class ToolDiscovery(Protocol):
    async def __call__(
        self, namespace: str, url: str, headers_from: HeadersFrom | None
    ) -> list[str]:
        """The names of the server's tools; :class:`DiscoveryFailed` if they cannot be listed."""
        ...


def _reason(error: BaseException) -> str:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__


async def list_tools(url: str, headers: dict[str, str], *, timeout_s: float = 10.0) -> list[str]:
    """The tool names of the streamable-HTTP MCP server at ``url``."""
    names: list[str] = []
    try:
        async with asyncio.timeout(timeout_s * 2):
            async with (
                httpx2.AsyncClient(headers=headers, timeout=timeout_s) as http,
                Client(
                    streamable_http_client(url, http_client=http), read_timeout_seconds=timeout_s
                ) as client,
            ):
                cursor: str | None = None
                for _ in range(MAX_PAGES):
                    page = await client.list_tools(cursor=cursor)
                    names += [tool.name for tool in page.tools]
                    cursor = page.next_cursor
                    if cursor is None:
                        break
    except Exception as e:  # any failure is the server's state, reported in its status
        raise DiscoveryFailed(f"cannot list the tools of {url} ({_reason(e)})") from e
    return names[:MAX_TOOLS]


async def header_values(
    client: AsyncClient, namespace: str, headers_from: HeadersFrom
) -> dict[str, str]:
    """The request headers of ``headersFrom``, read from its Secret."""
    name = headers_from.secret_name
    try:
        secret = await client.get(Secret, name, namespace=namespace)
    except ApiError as e:
        if e.status.code == 403:
            raise DiscoveryFailed(
                f"the operator may not read Secret {namespace}/{name} (headersFrom): grant it "
                "`get` on that one Secret to list the tools (docs/mcp.md); agents still get the "
                "headers from it"
            ) from e
        raise DiscoveryFailed(
            f"cannot read Secret {namespace}/{name} for headersFrom ({e.status.reason}); "
            "create it or fix spec.headersFrom.secretName"
        ) from e
    data = secret.data or {}
    values: dict[str, str] = {}
    for header, key in headers_from.headers.items():
        if key not in data:
            raise DiscoveryFailed(
                f"Secret {namespace}/{name} has no key {key!r} (header {header}); add it"
            )
        try:
            values[header] = base64.b64decode(data[key]).decode().strip()
        except (binascii.Error, UnicodeDecodeError) as e:
            raise DiscoveryFailed(f"Secret {namespace}/{name} key {key!r} is not text") from e
    return values


class LiveDiscovery:
    """Lists tools over the network, with header Secrets read through ``client``."""

    def __init__(self, client: AsyncClient, *, timeout_s: float = 10.0) -> None:
        self.client = client
        self.timeout_s = timeout_s

    async def __call__(
        self, namespace: str, url: str, headers_from: HeadersFrom | None
    ) -> list[str]:
        headers = await header_values(self.client, namespace, headers_from) if headers_from else {}
        return await list_tools(url, headers, timeout_s=self.timeout_s)
