"""What the proxy injects, and into which requests (pure functions of the request body).

The query is the user's text since the last assistant *reply*: an assistant message that only
calls tools, and the tool results after it, belong to the turn still in progress, so every
request of one tool loop retrieves for the same question (a stateless proxy cannot remember what
it injected into the first one). Retrieved chunks become one system message, numbered so the
model can cite them, placed after the leading system/developer messages (the agent's own
instructions stay first) and before the conversation. Nothing else in the request changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from agentkube.memory.knowledge import Passage
from agentkube.sidecar.errors import CollectionNotAllowed, SidecarUserError

JSON = dict[str, Any]

MAX_QUERY_CHARS = 4000
"""The tail of a long question is what it asks; embedding more only costs time."""

DEFAULT_TEMPLATE = (
    "Context retrieved from the knowledge base ({collections}) for the user's latest question. "
    "Use it when it is relevant and cite the passages you use as [n]; if it does not answer the "
    "question, say so rather than guess.\n\n{context}"
)
_LEADING_ROLES = frozenset({"system", "developer"})


def check_template(template: str) -> str:
    if "{context}" not in template:
        raise SidecarUserError(
            "the context template has no {context} placeholder: add it where the retrieved "
            "passages go"
        )
    return template


def _text_of(content: Any) -> str:
    """The text of a message's content: a string, or the ``text`` parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        ]
        return "\n".join(t for t in texts if t)
    return ""


def _is_reply(message: Mapping[str, Any]) -> bool:
    return message.get("role") == "assistant" and not message.get("tool_calls")


def user_query(messages: Sequence[Any]) -> str:
    """The user turns since the last assistant reply, joined; empty when there are none."""
    turns: list[str] = []
    for message in reversed(messages):
        if not isinstance(message, dict):
            continue
        if _is_reply(message):
            break
        if message.get("role") == "user":
            text = _text_of(message.get("content")).strip()
            if text:
                turns.append(text)
    query = "\n".join(reversed(turns))
    return query[-MAX_QUERY_CHARS:]


def render_context(passages: Sequence[Passage], collections: Sequence[str], template: str) -> str:
    blocks = [
        f"[{n}] source: {p.source or 'unknown'}\n{p.text.strip()}"
        for n, p in enumerate(passages, 1)
    ]
    return template.replace("{collections}", ", ".join(collections)).replace(
        "{context}", "\n\n".join(blocks)
    )


def inject(body: JSON, system_text: str) -> JSON:
    """A copy of ``body`` with one system message after the leading system/developer ones."""
    messages = list(body.get("messages") or [])
    at = 0
    while (
        at < len(messages)
        and isinstance(messages[at], dict)
        and messages[at].get("role") in _LEADING_ROLES
    ):
        at += 1
    messages.insert(at, {"role": "system", "content": system_text})
    return {**body, "messages": messages}


def narrowed(configured: Sequence[str], header: str | None) -> tuple[str, ...]:
    """The collections one request reads: the configured ones, or the subset its header names.

    A header naming any collection outside the configured set is refused: a client may narrow
    what the proxy reads, never widen it."""
    if header is None or not header.strip():
        return tuple(configured)
    wanted = tuple(dict.fromkeys(c.strip() for c in header.split(",") if c.strip()))
    outside = [c for c in wanted if c not in configured]
    if outside:
        raise CollectionNotAllowed(
            f"collection {outside[0]!r} is not one this proxy reads "
            f"({', '.join(configured)}); name a subset of them or drop the header"
        )
    return wanted


def sources_header(sources: Iterable[str]) -> str:
    """Sources for a response header: comma-separated, percent-encoded to stay ASCII."""
    return ",".join(quote(s, safe="/:._-@+") for s in sources)
