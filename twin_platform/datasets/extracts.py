"""Extracts: sentence-aligned pieces of an author's cleaned documents, the unit the LLM sees.

Each extract becomes one sample: its text is the answer (the author's own words), and the LLM writes
the instruction it answers. Extracts are sampled with a fixed seed, so a bounded run picks the same
ones every time (and hits the response cache on a re-run).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import psycopg

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_BLANK_LINES = re.compile(r"\n\s*\n")
_SIGN_OFF = re.compile(r"\n\s*\n\s*[—–-]{1,2}\s*[^\n]{1,40}\s*$")  # a closing "— Name" line


@dataclass(frozen=True)
class SourceDocument:
    document_id: str
    author: str
    category: str
    platform: str
    url: str
    title: str | None
    content: str
    language: str | None


@dataclass(frozen=True)
class Extract:
    extract_id: str  # "<document_id>:<index>": unique across authors and partitions
    document_id: str
    author: str
    category: str
    url: str
    text: str


def load_documents(conn: psycopg.Connection, author: str) -> list[SourceDocument]:
    """The author's usable cleaned snapshot (not empty, not binary) in a stable order, in one query."""
    rows = conn.execute(
        "SELECT document_id, author, category, platform, url, title, content, language"
        " FROM cleaned_documents"
        " WHERE author = %s AND status IN ('ok', 'truncated') ORDER BY document_id",
        (author,),
    ).fetchall()
    return [SourceDocument(*row) for row in rows]


def split_units(text: str) -> list[tuple[str, bool]]:
    """(sentence, starts a paragraph) pairs: paragraph breaks survive into the extracts."""
    units: list[tuple[str, bool]] = []
    for paragraph in _BLANK_LINES.split(text):
        sentences = [s.strip() for s in _SENTENCE_END.split(paragraph.strip()) if s.strip()]
        units.extend((sentence, i == 0) for i, sentence in enumerate(sentences))
    return units


def _hard_wrap(sentence: str, max_chars: int) -> list[str]:
    parts = []
    while len(sentence) > max_chars:
        cut = sentence.rfind(" ", 0, max_chars)
        cut = cut if cut > 0 else max_chars
        parts.append(sentence[:cut])
        sentence = sentence[cut:].strip()
    return [*parts, sentence] if sentence else parts


def _join(units: list[tuple[str, bool]]) -> str:
    return "".join(
        ("\n\n" if new and i else " " if i else "") + text for i, (text, new) in enumerate(units)
    )


def _finished(text: str) -> bool:
    return text.rstrip("\"')]*_").endswith((".", "!", "?"))


def cut_extracts(document: SourceDocument, min_chars: int, max_chars: int) -> list[Extract]:
    """Greedy sentence packing into [min_chars, max_chars], keeping paragraph breaks.

    An extract ends on a finished sentence where it can: a trailing heading or list intro moves on to
    start the next extract. A sentence longer than `max_chars` is cut at a space.
    """
    units = [
        (part, new and j == 0)
        for sentence, new in split_units(_SIGN_OFF.sub("", document.content))
        for j, part in enumerate(_hard_wrap(sentence, max_chars))
    ]
    pieces: list[str] = []
    current: list[tuple[str, bool]] = []
    for unit in units:
        if current and len(_join([*current, unit])) > max_chars:
            carry: list[tuple[str, bool]] = []
            while (
                len(current) > 1
                and not _finished(current[-1][0])
                and len(_join(current[:-1])) >= min_chars
            ):
                carry.insert(0, current.pop())
            pieces.append(_join(current))
            current = carry
        current.append(unit)
    if current:
        tail = _join(current)
        if len(tail) < min_chars and pieces and len(pieces[-1]) + len(tail) + 2 <= max_chars * 1.25:
            pieces[-1] = f"{pieces[-1]}\n\n{tail}" if current[0][1] else f"{pieces[-1]} {tail}"
        else:
            pieces.append(tail)
    return [
        Extract(
            f"{document.document_id}:{i}",
            document.document_id,
            document.author,
            document.category,
            document.url,
            piece,
        )
        for i, piece in enumerate(pieces)
        if len(piece) >= min_chars
    ]


def sample_extracts(extracts: list[Extract], limit: int, seed: int) -> list[Extract]:
    """The first `limit` of a seeded shuffle, in a stable order.

    Spreads the sample over documents, and raising `limit` only adds extracts: those already sent to
    the LLM keep their cached answers.
    """
    shuffled = sorted(extracts, key=lambda e: e.extract_id)
    random.Random(seed).shuffle(shuffled)
    return sorted(shuffled[:limit], key=lambda e: e.extract_id)
