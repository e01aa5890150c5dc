"""Token-aware chunking per category, measured with the embedding model's own tokenizer.

Every chunk fits the model (all-MiniLM-L6-v2 reads 256 tokens, special tokens included), so nothing
is silently truncated at embedding time:
- posts stay whole when they fit, else they are cut like articles;
- articles are packed from paragraphs, then sentences, with a sentence overlap between chunks;
- repositories are cut at file boundaries, then at top-level definitions, then at blank lines; each
  chunk starts with its file path.
A piece longer than the budget on its own is cut at token boundaries. Chunk ids are
sha256(document_id, text), so re-running on the same document yields the same ids.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twin_platform.documents import Category
from twin_platform.features.cleaning import split_fences

if TYPE_CHECKING:
    from tokenizers import Tokenizer

CHUNKER_VERSION = "1"
"""Bump when the chunking rules change: every document is chunked again on the next run."""

_PARAGRAPH = re.compile(r"\n[ \t]*\n")
_SENTENCE = re.compile(r"(?<=[.!?…。！？])\s+")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
_FILE_HEADING = re.compile(r"^#{1,6}\s+`?(?P<path>[^\s`]+)`?\s*$")
_CLOSING = (")", "}", "]", "end")


def chunk_id(document_id: str, content: str) -> str:
    return hashlib.sha256(f"{document_id}\n{content}".encode()).hexdigest()


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    chunk_index: int
    content: str
    token_count: int
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Piece:
    """A unit the packer never splits: a paragraph, a sentence, a code unit or a token window."""

    text: str
    tokens: int
    joiner: str  # what goes between the previous piece and this one
    overlappable: bool = True
    meta: dict[str, Any] = field(default_factory=dict)


class Chunker:
    """Cuts cleaned documents into chunks that fit `max_tokens` of `tokenizer` (unpadded, untruncated)."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        max_tokens: int = 256,
        article_overlap: int = 48,
        post_overlap: int = 24,
    ) -> None:
        self.tokenizer = tokenizer
        self.special_tokens = len(tokenizer.encode("", add_special_tokens=True).ids)
        self.max_tokens = max_tokens
        self.budget = max_tokens - self.special_tokens
        self.max_chars = self.budget * 16  # far above real text (about 4 characters a token)
        if self.budget < 16:
            raise ValueError(f"max_tokens={max_tokens} leaves no room for text")
        self.overlap = {Category.ARTICLES: article_overlap, Category.POSTS: post_overlap}
        vocabulary = hashlib.sha256(tokenizer.to_str().encode()).hexdigest()
        self.fingerprint = hashlib.sha256(
            f"{CHUNKER_VERSION}|{vocabulary}|{max_tokens}|{article_overlap}|{post_overlap}".encode()
        ).hexdigest()[:16]

    # -- tokens ---------------------------------------------------------------------------------------
    def count(self, texts: list[str]) -> list[int]:
        """Token counts without special tokens."""
        if not texts:
            return []
        return [len(e.ids) for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def _token_windows(self, text: str, size: int) -> list[str]:
        """Cut at every `size`-th token, and within `max_chars` (a 20k-character "word" is 1 token)."""
        offsets = self.tokenizer.encode(text, add_special_tokens=False).offsets
        cuts = [offsets[i][0] for i in range(size, len(offsets), size)]
        bounds = [0, *cuts, len(text)]
        windows = [text[a:b].strip() for a, b in itertools.pairwise(bounds)]
        step = self.max_chars
        return [w[i : i + step] for w in windows if w for i in range(0, len(w), step)]

    # -- entry point ----------------------------------------------------------------------------------
    def chunk(self, document_id: str, category: Category | str, content: str) -> list[Chunk]:
        category = Category(category)
        if not content.strip():
            return []
        if category == Category.REPOSITORIES:
            texts = self._chunk_repository(content)
        elif category == Category.POSTS and self.count([content])[0] <= self.budget:
            texts = [(content.strip(), {})]
        else:
            texts = self._pack(self._prose_pieces(content), self.budget, self.overlap[category])
        return self._finish(document_id, texts)

    def _finish(self, document_id: str, texts: list[tuple[str, dict[str, Any]]]) -> list[Chunk]:
        """Exact token counts of the final texts; re-cut the rare one that joining made too long."""
        fitted: list[tuple[str, dict[str, Any], int]] = []
        for (text, meta), n in zip(texts, self.count([t for t, _ in texts]), strict=True):
            if n <= self.budget:
                fitted.append((text, meta, n))
                continue
            windows = self._token_windows(text, self.budget)
            fitted.extend((w, meta, m) for w, m in zip(windows, self.count(windows), strict=True))
        chunks: list[Chunk] = []
        seen: set[str] = set()
        for text, meta, n in fitted:
            cid = chunk_id(document_id, text)
            if cid in seen:  # a repeated paragraph or file: one chunk is enough
                continue
            seen.add(cid)
            chunks.append(Chunk(cid, len(chunks), text, n + self.special_tokens, meta))
        return chunks

    # -- packing --------------------------------------------------------------------------------------
    def _pack(
        self, pieces: list[_Piece], budget: int, overlap: int
    ) -> list[tuple[str, dict[str, Any]]]:
        """Greedy packing; a new chunk starts with the previous chunk's last pieces up to `overlap`."""
        chunks: list[tuple[str, dict[str, Any]]] = []
        current: list[_Piece] = []
        used = 0
        for piece in pieces:
            chars = sum(len(p.text) + len(p.joiner) for p in current)
            if current and (
                used + piece.tokens > budget or chars + len(piece.text) > self.max_chars
            ):
                chunks.append(_join(current))
                tail = self._overlap(current, overlap) if overlap else []
                carried = sum(p.tokens for p in tail)
                if carried + piece.tokens > budget:
                    tail, carried = [], 0
                current, used = tail, carried
            current.append(piece)
            used += piece.tokens
        if current:
            chunks.append(_join(current))
        return chunks

    def _overlap(self, pieces: list[_Piece], overlap: int) -> list[_Piece]:
        """The last whole sentences of `pieces` that fit in `overlap` tokens."""
        tail: list[_Piece] = []
        carried = 0
        for previous in reversed(pieces):
            if not previous.overlappable:
                break
            if carried + previous.tokens <= overlap:
                tail.insert(0, previous)
                carried += previous.tokens
                continue
            sentences = [s for s in _SENTENCE.split(previous.text) if s.strip()]
            kept: list[str] = []
            for sentence, n in zip(
                reversed(sentences), reversed(self.count(sentences)), strict=True
            ):
                if carried + n > overlap:
                    break
                kept.insert(0, sentence)
                carried += n
            if kept:
                text = " ".join(kept)
                tail.insert(
                    0, _Piece(text, self.count([text])[0], previous.joiner, True, previous.meta)
                )
            break
        return tail

    def _fit(self, pieces: list[_Piece], budget: int) -> list[_Piece]:
        """Cut pieces longer than the budget into token windows."""
        out: list[_Piece] = []
        for piece in pieces:
            if piece.tokens <= budget and len(piece.text) <= self.max_chars:
                out.append(piece)
                continue
            windows = self._token_windows(piece.text, budget)
            for i, (window, n) in enumerate(zip(windows, self.count(windows), strict=True)):
                out.append(_Piece(window, n, piece.joiner if i == 0 else " ", False, piece.meta))
        return out

    def _prose_pieces(self, text: str) -> list[_Piece]:
        """Paragraphs (and fenced code blocks) as pieces; too-long paragraphs become sentences."""
        blocks: list[tuple[str, dict[str, Any]]] = []
        section: str | None = None
        for is_code, part in split_fences(text):
            if is_code:
                blocks.append((part.strip("\n"), {"section": section} if section else {}))
                continue
            for paragraph in _PARAGRAPH.split(part):
                paragraph = paragraph.strip()
                if not paragraph:
                    continue
                heading = _HEADING.match(paragraph.split("\n", 1)[0])
                if heading:
                    section = heading.group(1).strip()
                blocks.append((paragraph, {"section": section} if section else {}))
        counts = self.count([b for b, _ in blocks])
        pieces: list[_Piece] = []
        for (block, meta), n in zip(blocks, counts, strict=True):
            if n <= self.budget:
                pieces.append(_Piece(block, n, "\n\n", True, meta))
                continue
            sentences = [s for s in _SENTENCE.split(block) if s.strip()]
            for i, (sentence, m) in enumerate(zip(sentences, self.count(sentences), strict=True)):
                pieces.append(_Piece(sentence, m, "\n\n" if i == 0 else " ", True, meta))
        return self._fit(pieces, self.budget)

    # -- repositories ---------------------------------------------------------------------------------
    def _chunk_repository(self, text: str) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        path: str | None = None
        for is_code, part in split_fences(text):
            if not is_code:
                headings = [
                    m.group("path") for line in part.split("\n") if (m := _FILE_HEADING.match(line))
                ]
                path = headings[-1] if headings else path
                prose = "\n".join(
                    line for line in part.split("\n") if not _FILE_HEADING.match(line)
                )
                if prose.strip():
                    out.extend(self._pack(self._prose_pieces(prose), self.budget, 0))
                continue
            fence_line, _, body = part.partition("\n")
            body = body.rsplit("\n", 1)[0] if "\n" in body else ""
            language = fence_line.strip("`~ \t") or None
            out.extend(self._chunk_file(path or "unknown", language, body))
        return out

    def _chunk_file(
        self, path: str, language: str | None, code: str
    ) -> list[tuple[str, dict[str, Any]]]:
        if not code.strip():
            return []
        header = f"{path}\n"
        budget = self.budget - self.count([header])[0]
        units = _code_units(code)
        counts = self.count([u for u, _ in units])
        pieces: list[_Piece] = []
        for (unit, line), n in zip(units, counts, strict=True):
            if n <= budget:
                pieces.append(_Piece(unit, n, "\n\n", False, {"start_line": line}))
                continue
            blocks, joiner = _blank_line_blocks(unit, line)
            for (block, block_line), m in zip(
                blocks, self.count([b for b, _ in blocks]), strict=True
            ):
                pieces.append(_Piece(block, m, joiner, False, {"start_line": block_line}))
        meta = {"path": path, "language": language}
        return [
            (header + text, meta | m)
            for text, m in self._pack(self._fit(pieces, budget), budget, 0)
        ]


def _join(pieces: list[_Piece]) -> tuple[str, dict[str, Any]]:
    text = pieces[0].text + "".join(p.joiner + p.text for p in pieces[1:])
    return text, dict(pieces[0].meta)


def _code_units(code: str) -> list[tuple[str, int]]:
    """Top-level units: a new one starts at an unindented line after a blank line (def, class, fn...)."""
    units: list[tuple[str, int]] = []
    current: list[str] = []
    start = 1
    previous_blank = False
    for number, line in enumerate(code.split("\n"), start=1):
        starts_unit = previous_blank and line[:1].strip() and not line.lstrip().startswith(_CLOSING)
        if starts_unit and any(x.strip() for x in current):
            units.append(("\n".join(current).strip("\n"), start))
            current, start = [], number
        current.append(line)
        previous_blank = not line.strip()
    if any(x.strip() for x in current):
        units.append(("\n".join(current).strip("\n"), start))
    return units


def _blank_line_blocks(unit: str, first_line: int) -> tuple[list[tuple[str, int]], str]:
    """A long unit cut at its blank lines (e.g. between methods), or else line by line; and the joiner."""
    lines = unit.split("\n")
    blocks: list[tuple[str, int]] = []
    current: list[str] = []
    start = first_line
    for offset, line in enumerate(lines):
        if not line.strip() and current:
            blocks.append(("\n".join(current), start))
            current, start = [], first_line + offset + 1
            continue
        current.append(line)
    if current:
        blocks.append(("\n".join(current), start))
    if len(blocks) == 1:
        return [(line, first_line + i) for i, line in enumerate(lines) if line.strip()], "\n"
    return blocks, "\n\n"
