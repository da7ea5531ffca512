"""What this release can run of an Agent's spec (pure).

The API accepts more than the runtime runs yet: ``mcp:<name>`` tools (naming a
``kind: MCPServer``; ``mcp:<http(s) url>`` runs) are valid objects whose capability lands in a
later release. The
runtime refuses such an Agent with one line (exit 2), and the operator reports
``Ready=False, reason Unsupported`` instead of starting a pod that would crash-loop. One list,
used by both, shrinks as each capability lands.
"""

from __future__ import annotations

from agentkube.api.mcp import mcp_server_url
from agentkube.api.models import Agent


def unsupported_features(agent: Agent) -> list[str]:
    """Each part of ``agent``'s spec this release cannot run, as ``field: what``."""
    spec = agent.spec
    found: list[str] = []
    for tool in spec.tools:
        kind = tool.split(":", 1)[0]
        if kind == "mcp" and mcp_server_url(tool) is None:
            found.append(f"spec.tools: {tool!r} (mcp:<name> tools; mcp:<http(s) url> runs)")
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
