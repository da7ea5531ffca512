"""Chunking is pure: headings, paragraphs, code fences, sizes and overlap."""

from __future__ import annotations

import itertools

from agentkube.memory.chunking import chunk_document

GUIDE = """# Guide

Welcome to the guide.

## Install

Run the installer.

```bash
# a comment, not a heading

make setup
```

## Use

Call the tool.
"""


def test_markdown_is_cut_at_headings_with_the_heading_trail_leading_each_chunk() -> None:
    chunks = chunk_document(GUIDE, markdown=True)
    assert [c.heading for c in chunks] == ["Guide", "Guide › Install", "Guide › Use"]
    assert chunks[1].text.startswith("Guide › Install\n\nRun the installer.")
    assert [c.index for c in chunks] == [0, 1, 2]


def test_a_code_fence_is_never_split_or_read_as_headings() -> None:
    install = chunk_document(GUIDE, markdown=True)[1].text
    assert "# a comment, not a heading\n\nmake setup\n```" in install


def test_a_deeper_heading_replaces_its_sibling_in_the_trail() -> None:
    text = "# A\n\n## B\n\nb\n\n### C\n\nc\n\n## D\n\nd\n"
    assert [c.heading for c in chunk_document(text, markdown=True)] == [
        "A › B",
        "A › B › C",
        "A › D",
    ]


def test_chunks_stay_within_the_size_and_overlap_their_neighbours() -> None:
    paragraphs = [
        f"Paragraph {n} says " + " ".join(f"w{n}x{i}" for i in range(20)) for n in range(30)
    ]
    chunks = chunk_document(
        "\n\n".join(paragraphs), markdown=False, max_chars=600, overlap_chars=200
    )
    assert len(chunks) > 3
    assert all(len(c.text) <= 600 for c in chunks)
    for before, after in itertools.pairwise(chunks):
        assert after.text.split("\n\n")[0] in before.text  # the next chunk starts with the overlap


def test_a_paragraph_longer_than_a_chunk_is_cut_at_sentences() -> None:
    text = " ".join(f"Sentence number {n} is here." for n in range(200))
    chunks = chunk_document(text, markdown=False, max_chars=500, overlap_chars=100)
    assert len(chunks) > 5
    assert all(len(c.text) <= 500 for c in chunks)
    assert all(c.text.endswith(".") for c in chunks)
    assert "Sentence number 199 is here." in chunks[-1].text


def test_plain_text_has_no_headings_and_a_blank_document_no_chunks() -> None:
    chunks = chunk_document("# not a heading in text\n\nsecond", markdown=False)
    assert [c.heading for c in chunks] == [""]
    assert chunks[0].text == "# not a heading in text\n\nsecond"
    assert chunk_document("  \n\n \n", markdown=True) == []
