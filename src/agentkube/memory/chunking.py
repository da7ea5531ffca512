"""Split documents into chunks that are retrieved on their own.

Markdown is cut at headings first (outside code fences), then each section's paragraphs are
packed into chunks of at most ``max_chars``; the next chunk of a section starts with the last
paragraph(s) of the one before, up to ``overlap_chars``, so a fact straddling a cut is whole in
at least one chunk. A paragraph longer than a chunk is cut at sentence or word boundaries. Each
chunk starts with its heading trail (``Guide › Install``), which is what a reader of the chunk
alone needs. Plain text is the same without headings. Pure functions: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_CHARS = 1200
OVERLAP_CHARS = 200
MARKDOWN_SUFFIXES = frozenset({".md", ".markdown", ".mdx"})

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True, kw_only=True)
class Chunk:
    index: int
    text: str
    heading: str


@dataclass(frozen=True, kw_only=True)
class _Section:
    trail: str
    paragraphs: list[str]


def chunk_document(
    text: str, *, markdown: bool, max_chars: int = MAX_CHARS, overlap_chars: int = OVERLAP_CHARS
) -> list[Chunk]:
    """The chunks of one document, in order; empty for a blank document."""
    if overlap_chars >= max_chars:
        raise ValueError("overlap_chars must be smaller than max_chars")
    sections = _sections(text, markdown=markdown)
    chunks: list[Chunk] = []
    for section in sections:
        budget = max_chars - (len(section.trail) + 2 if section.trail else 0)
        budget = max(budget, max_chars // 2)
        for body in _pack(section.paragraphs, budget, overlap_chars):
            full = f"{section.trail}\n\n{body}" if section.trail else body
            chunks.append(Chunk(index=len(chunks), text=full, heading=section.trail))
    return chunks


def _sections(text: str, *, markdown: bool) -> list[_Section]:
    sections: list[_Section] = []
    trail: list[tuple[int, str]] = []
    paragraphs: list[str] = []
    lines: list[str] = []
    in_fence = False

    def end_paragraph() -> None:
        if any(line.strip() for line in lines):
            paragraphs.append("\n".join(lines).strip("\n"))
        lines.clear()

    def end_section() -> None:
        end_paragraph()
        if paragraphs:
            heading = " › ".join(t for _, t in trail)
            sections.append(_Section(trail=heading, paragraphs=paragraphs[:]))
        paragraphs.clear()

    for line in text.replace("\r\n", "\n").split("\n"):
        if markdown and _FENCE.match(line):
            in_fence = not in_fence
            lines.append(line)
            continue
        heading = _HEADING.match(line) if markdown and not in_fence else None
        if heading:
            end_section()
            level = len(heading.group(1))
            trail = [(lvl, t) for lvl, t in trail if lvl < level] + [(level, heading.group(2))]
        elif not line.strip() and not in_fence:
            end_paragraph()
        else:
            lines.append(line.rstrip())
    end_section()
    return sections


def _pack(paragraphs: list[str], budget: int, overlap: int) -> list[str]:
    pieces = [piece for p in paragraphs for piece in _split_long(p, budget, overlap)]
    chunks: list[str] = []
    current: list[str] = []
    fresh = 0  # pieces in ``current`` not carried over from the previous chunk
    for piece in pieces:
        if current and fresh and len("\n\n".join([*current, piece])) > budget:
            chunks.append("\n\n".join(current))
            current = _tail(current, overlap)
            if len("\n\n".join([*current, piece])) > budget:
                current = []
            fresh = 0
        current.append(piece)
        fresh += 1
    if current and fresh:
        chunks.append("\n\n".join(current))
    return chunks


def _tail(pieces: list[str], overlap: int) -> list[str]:
    """The last pieces whose joined length fits in ``overlap``, else the last piece's last words."""
    kept: list[str] = []
    for piece in reversed(pieces):
        if len("\n\n".join([piece, *kept])) > overlap:
            break
        kept.insert(0, piece)
    if not kept and pieces:
        words = _last_words(pieces[-1].split(), overlap)
        kept = [" ".join(words)] if words else []
    return kept


def _last_words(words: list[str], limit: int) -> list[str]:
    kept: list[str] = []
    for word in reversed(words):
        if len(" ".join([word, *kept])) > limit:
            break
        kept.insert(0, word)
    return kept


def _split_long(paragraph: str, budget: int, overlap: int) -> list[str]:
    """A paragraph cut into pieces of at most ``budget`` characters, overlapping by words."""
    if len(paragraph) <= budget:
        return [paragraph]
    units = [u for u in _SENTENCE_END.split(paragraph) if u]
    if any(len(u) > budget for u in units):
        units = paragraph.split()
    pieces: list[str] = []
    current: list[str] = []
    for unit in units:
        unit = unit[:budget]
        if current and len(" ".join([*current, unit])) > budget:
            pieces.append(" ".join(current))
            carried = _last_words(current, overlap)
            current = carried if len(" ".join([*carried, unit])) <= budget else []
        current.append(unit)
    if current:
        pieces.append(" ".join(current))
    return pieces
