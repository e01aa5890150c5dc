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


@dataclass(frozen=True)
class SourceDocument:
    document_id: str
    author: str
    category: str
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
    """The author's cleaned snapshot in a stable order (one query, not one row at a time)."""
    rows = conn.execute(
        "SELECT document_id, author, category, url, title, content, language FROM cleaned_documents"
        " WHERE author = %s ORDER BY document_id",
        (author,),
    ).fetchall()
    return [SourceDocument(*row) for row in rows]


def split_sentences(text: str) -> list[str]:
    sentences: list[str] = []
    for paragraph in _BLANK_LINES.split(text):
        sentences.extend(s.strip() for s in _SENTENCE_END.split(paragraph.strip()) if s.strip())
    return sentences


def _hard_wrap(sentence: str, max_chars: int) -> list[str]:
    parts = []
    while len(sentence) > max_chars:
        cut = sentence.rfind(" ", 0, max_chars)
        cut = cut if cut > 0 else max_chars
        parts.append(sentence[:cut])
        sentence = sentence[cut:].strip()
    return [*parts, sentence] if sentence else parts


def cut_extracts(document: SourceDocument, min_chars: int, max_chars: int) -> list[Extract]:
    """Greedy sentence packing into [min_chars, max_chars]; a longer sentence is cut at a space."""
    pieces: list[str] = []
    current = ""
    for sentence in split_sentences(document.content):
        for part in _hard_wrap(sentence, max_chars):
            candidate = f"{current} {part}".strip()
            if len(candidate) > max_chars and current:
                pieces.append(current)
                candidate = part
            current = candidate
    if current:
        if (
            len(current) < min_chars
            and pieces
            and len(pieces[-1]) + len(current) + 1 <= max_chars * 1.25
        ):
            pieces[-1] = f"{pieces[-1]} {current}"
        else:
            pieces.append(current)
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
    """At most `limit`, spread over documents by a seeded shuffle, returned in a stable order."""
    if len(extracts) <= limit:
        return extracts
    chosen = random.Random(seed).sample(extracts, limit)
    return sorted(chosen, key=lambda e: e.extract_id)
