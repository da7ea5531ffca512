"""What this release can run of an Agent's spec (pure).

The API accepts more than the runtime runs: an ``mcp:`` tool that is neither an http(s) URL nor
the name of an MCPServer (``mcp:ftp://…``, ``mcp:Not_A_Name``) is a valid object nothing can
connect to. The runtime refuses such an Agent with one line (exit 2), and the operator reports
``Ready=False, reason Unsupported`` instead of starting a pod that would crash-loop. One list,
used by both, shrinks as each capability lands.
"""

from __future__ import annotations

from agentkube.api.mcp import mcp_server_name, mcp_server_url
from agentkube.api.models import Agent


def unsupported_features(agent: Agent) -> list[str]:
    """Each part of ``agent``'s spec this release cannot run, as ``field: what``."""
    spec = agent.spec
    found: list[str] = []
    for tool in spec.tools:
        kind = tool.split(":", 1)[0]
        if kind == "mcp" and mcp_server_url(tool) is None and mcp_server_name(tool) is None:
            found.append(
                f"spec.tools: {tool!r} (mcp: takes an http(s) URL or the name of an MCPServer)"
            )
    return found


def unsupported_message(agent: Agent) -> str | None:
    """One sentence naming what cannot run and the fix, or None when everything can."""
    found = unsupported_features(agent)
    if not found:
        return None
    return (
        f"this release of agentkube cannot run {'; '.join(found)}; remove "
        f"{'it' if len(found) == 1 else 'them'} from the Agent or upgrade agentkube"
    )
