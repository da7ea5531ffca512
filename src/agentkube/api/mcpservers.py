"""The ``MCPServer`` kind (``ai.openvn/v1``): an MCP server agents name as ``mcp:<name>``.

Exactly one source:

- ``url`` — a remote streamable-HTTP server, optionally with request headers read from a Secret
  (``headersFrom``: header name → key of the Secret);
- ``image`` + ``port`` (+ ``args``, ``env``, ``path``) — a server the operator runs as a
  locked-down Deployment + Service in the MCPServer's namespace;
- ``command`` (+ ``args``, ``env``) — a stdio server, run as a subprocess on one machine only
  (``agentkube run`` / ``agent serve``); the operator reports it as not runnable in a cluster.

The status carries the URL agents connect to and the tools the operator discovered on the server.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from agentkube.api.models import DNS_LABEL, ObjectMeta, ObjectStatus, Resources, _Wire

HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"  # an HTTP token (RFC 9110)
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
SOURCES = (
    "url (a remote server), image (a server the operator runs) or command (a local stdio server)"
)


class HeadersFrom(_Wire):
    """Request headers whose values are keys of a Secret in the MCPServer's namespace."""

    secret_name: str = Field(..., pattern=rf"^{DNS_LABEL}(\.{DNS_LABEL})*$", max_length=253)
    headers: dict[str, str] = Field(
        ...,
        min_length=1,
        max_length=16,
        description="header name -> key of the Secret holding its value",
    )

    @field_validator("headers")
    @classmethod
    def _header_names(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, key in headers.items():
            if not re.fullmatch(HEADER_NAME, name):
                raise ValueError(f"{name!r} is not an HTTP header name; use letters, digits, '-'")
            if not re.fullmatch(r"^[-._a-zA-Z0-9]{1,253}$", key):
                raise ValueError(f"header {name}: {key!r} is not a Secret key")
        return headers


class EnvVar(_Wire):
    name: str = Field(..., pattern=ENV_NAME, max_length=253)
    value: str = Field("", max_length=32768)


_EXACTLY_ONE = (
    "(has(self.url) ? 1 : 0) + (has(self.image) ? 1 : 0) + (has(self.command) ? 1 : 0) == 1"
)


class MCPServerSpec(_Wire):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": _EXACTLY_ONE, "message": f"set exactly one of {SOURCES}"},
                {
                    "rule": "has(self.image) == has(self.port)",
                    "message": "image and port go together: the port is where the image serves MCP",
                    "fieldPath": ".port",
                },
                {
                    "rule": "!has(self.headersFrom) || has(self.url)",
                    "message": "headersFrom is for a url server; remove it or set url",
                    "fieldPath": ".headersFrom",
                },
                {
                    "rule": "has(self.url) ? !has(self.args) && !has(self.env) : true",
                    "message": "args and env are for image or command servers; a url server "
                    "takes neither",
                    "fieldPath": ".args",
                },
            ]
        }
    )

    url: str | None = Field(None, pattern=r"^https?://[^\s/]+(/\S*)?$", max_length=2048)
    headers_from: HeadersFrom | None = None
    image: str | None = Field(None, min_length=1, max_length=512)
    port: int | None = Field(None, ge=1, le=65535)
    path: str = Field(
        "/mcp",
        pattern=r"^/\S*$",
        max_length=512,
        description="where an image server answers MCP on its port",
    )
    command: str | None = Field(None, min_length=1, max_length=4096)
    args: list[str] | None = Field(None, max_length=128)
    env: list[EnvVar] | None = Field(None, max_length=64)
    resources: Resources | None = Field(None, description="of an image server's container")

    @model_validator(mode="after")
    def _one_source(self) -> MCPServerSpec:
        sources = [s for s in (self.url, self.image, self.command) if s is not None]
        if len(sources) != 1:
            raise ValueError(f"set exactly one of {SOURCES}")
        if (self.image is None) != (self.port is None):
            raise ValueError("image and port go together: the port is where the image serves MCP")
        if self.headers_from is not None and self.url is None:
            raise ValueError("headersFrom is for a url server; remove it or set url")
        if self.url is not None and (self.args is not None or self.env is not None):
            raise ValueError(
                "args and env are for image or command servers; a url server takes neither"
            )
        return self

    @property
    def source(self) -> Literal["url", "image", "command"]:
        return "url" if self.url is not None else "image" if self.image is not None else "command"


class MCPServerStatus(ObjectStatus):
    url: str | None = None
    tools: list[str] | None = None


class MCPServer(_Wire):
    """An MCP server agents use as mcp:<name>: a remote URL, or an image the operator runs."""

    kind_name: ClassVar[str] = "MCPServer"
    plural: ClassVar[str] = "mcpservers"

    api_version: Literal["ai.openvn/v1"]
    kind: Literal["MCPServer"]
    metadata: ObjectMeta
    spec: MCPServerSpec
    status: MCPServerStatus | None = None
