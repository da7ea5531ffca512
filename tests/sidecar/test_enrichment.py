"""What the proxy injects, and where: pure functions of the request body."""

from __future__ import annotations

import pytest

from agentkube.memory.knowledge import Passage
from agentkube.sidecar.enrichment import (
    DEFAULT_TEMPLATE,
    check_template,
    inject,
    narrowed,
    render_context,
    sources_header,
    user_query,
)
from agentkube.sidecar.errors import CollectionNotAllowed, SidecarUserError


def test_the_query_is_the_user_turns_since_the_last_assistant_reply() -> None:
    messages = [
        {"role": "system", "content": "be terse"},
        {"role": "user", "content": "old question"},
        {"role": "assistant", "content": "old answer"},
        {"role": "user", "content": "first part"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "second part"}, {"type": "image_url"}],
        },
    ]
    assert user_query(messages) == "first part\nsecond part"


def test_tool_calls_and_results_belong_to_the_turn_in_progress() -> None:
    messages = [
        {"role": "assistant", "content": "earlier reply"},
        {"role": "user", "content": "the question"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]},
        {"role": "tool", "tool_call_id": "c1", "content": "a result"},
    ]
    assert user_query(messages) == "the question"


def test_no_user_text_means_no_query() -> None:
    assert user_query([{"role": "system", "content": "x"}, {"role": "user", "content": " "}]) == ""
    assert (
        user_query([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]) == ""
    )


def test_the_context_goes_after_the_instructions_and_before_the_conversation() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "a"},
            {"role": "developer", "content": "b"},
            {"role": "user", "content": "q"},
        ],
    }
    out = inject(body, "CTX")
    assert [m["content"] for m in out["messages"]] == ["a", "b", "CTX", "q"]
    assert out["model"] == "m" and len(body["messages"]) == 3  # the original is untouched


def test_passages_are_numbered_with_their_sources() -> None:
    passages = [
        Passage(text="alpha\n", source="/d/a.md", score=0.9),
        Passage(text="beta", source="", score=0.5),
    ]
    text = render_context(passages, ["kb"], DEFAULT_TEMPLATE)
    assert "(kb)" in text
    assert text.endswith("[1] source: /d/a.md\nalpha\n\n[2] source: unknown\nbeta")


def test_a_template_without_a_context_mark_is_refused() -> None:
    with pytest.raises(SidecarUserError, match=r"\{context\} placeholder"):
        check_template("Use this: {collections}")


def test_a_collection_header_narrows_and_never_widens() -> None:
    assert narrowed(("a", "b"), None) == ("a", "b")
    assert narrowed(("a", "b"), " b , b") == ("b",)
    with pytest.raises(CollectionNotAllowed, match="'c' is not one this proxy reads"):
        narrowed(("a", "b"), "a,c")


def test_sources_in_a_header_stay_ascii() -> None:
    assert sources_header(["/d/é x.md", "/d/b.md"]) == "/d/%C3%A9%20x.md,/d/b.md"
