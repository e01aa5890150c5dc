"""Context assembly: the best chunks, numbered with their sources, within a token budget.

Chunks are added best first until the budget is spent; the chunk that crosses it is cut at a word
boundary rather than dropped when enough room is left for it to be useful.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twin_platform.storage.feature_store.records import Chunk

MIN_USEFUL_TOKENS = 32


def approx_tokens(text: str) -> int:
    """About 4 characters per token for English: used when no tokenizer is at hand."""
    return max(1, len(text) // 4)


@dataclass(frozen=True)
class Context:
    text: str
    chunks: list[Chunk]  # those that made it in, in order
    tokens: int


def _header(i: int, chunk: Chunk) -> str:
    """The passage's number, what it cites by; no URL: small models copy and invent URLs."""
    return f"[{i}] ({chunk.category})\n"


def assemble(
    chunks: Sequence[Chunk],
    budget_tokens: int,
    count_tokens: Callable[[str], int] = approx_tokens,
) -> Context:
    parts: list[str] = []
    used: list[Chunk] = []
    spent = 0
    for chunk in chunks:
        block = _header(len(used) + 1, chunk) + chunk.content.strip()
        cost = count_tokens(block) + 1
        if spent + cost > budget_tokens:
            room = budget_tokens - spent
            if room < MIN_USEFUL_TOKENS:
                break
            block = _truncate(block, room - 1, count_tokens)
            cost = count_tokens(block) + 1
        parts.append(block)
        used.append(chunk)
        spent += cost
        if spent >= budget_tokens:
            break
    return Context(text="\n\n".join(parts), chunks=used, tokens=spent)


def _truncate(text: str, tokens: int, count_tokens: Callable[[str], int]) -> str:
    """The longest word-boundary prefix within `tokens` (binary search over words)."""
    words = text.split(" ")
    lo, hi = 0, len(words)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(" ".join(words[:mid]) + " …") <= tokens:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo]) + " …"
