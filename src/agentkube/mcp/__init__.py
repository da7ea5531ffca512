"""MCP: the sandbox served as an MCP server (``agentkube sandbox mcp``).

The other direction, an agent using MCP servers' tools (``mcp:<url>`` in ``spec.tools``), is the
runtime's: :mod:`agentkube.runtime.mcp_tools`.
"""
