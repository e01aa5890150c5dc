"""Reranking: order the fused candidates by relevance to the original query and keep the top k.

A cross-encoder (the reference uses ms-marco MiniLM) is the most accurate and is used when configured
(`cross-encoder:<model id or path>`); none ships on PyPI, so the offline default is `bi-encoder`: the
embedding model's cosine similarity to the original query (already computed by the search) plus a
query-word overlap bonus. `lexical` scores by query-word overlap alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from twin_platform.rag.expansion import keywords
from twin_platform.rag.retriever import deduplicate
from twin_platform.storage.feature_store.records import Chunk

LEXICAL_WEIGHT = 0.5
Reranker = Callable[[str, Sequence[Chunk]], list[float]]


def bi_encoder_scores(query: str, chunks: Sequence[Chunk]) -> list[float]:
    """Cosine similarity, plus half the share of query words the chunk contains: exact names and
    identifiers, which embeddings blur, still count."""
    overlap = lexical_scores(query, chunks)
    return [
        (c.similarity or 0.0) + LEXICAL_WEIGHT * o for c, o in zip(chunks, overlap, strict=True)
    ]


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char in "_'-"


def contains_word(text: str, word: str) -> bool:
    """`word` occurs in `text` as a whole word: not inside a longer run of letters, digits, _ ' or -.

    Plain substring search with a look at the neighbours: a regex per query word cost more to
    compile than the whole search, since most query words are new.
    """
    at = text.find(word)
    while at >= 0:
        end = at + len(word)
        if (at == 0 or not _is_word_char(text[at - 1])) and (
            end == len(text) or not _is_word_char(text[end])
        ):
            return True
        at = text.find(word, at + 1)
    return False


def lexical_scores(query: str, chunks: Sequence[Chunk]) -> list[float]:
    """Fraction of the query's content words found in the chunk."""
    words = set(keywords(query).split())
    if not words:
        return [0.0] * len(chunks)
    scores = []
    for chunk in chunks:
        text = chunk.content.lower()
        scores.append(sum(contains_word(text, w) for w in words) / len(words))
    return scores


@cache
def _cross_encoder(model: str) -> Any:
    from sentence_transformers import CrossEncoder

    return CrossEncoder(model)


def cross_encoder_scores(model: str) -> Reranker:
    def score(query: str, chunks: Sequence[Chunk]) -> list[float]:
        if not chunks:
            return []
        return [
            float(s) for s in _cross_encoder(model).predict([(query, c.content) for c in chunks])
        ]

    return score


def get_reranker(spec: str) -> Reranker:
    """`bi-encoder`, `lexical` or `cross-encoder:<model>`."""
    if spec == "bi-encoder":
        return bi_encoder_scores
    if spec == "lexical":
        return lexical_scores
    if spec.startswith("cross-encoder:") and spec.split(":", 1)[1]:
        return cross_encoder_scores(spec.split(":", 1)[1])
    raise ValueError(f"unknown reranker {spec!r}: use bi-encoder, lexical or cross-encoder:<model>")


def rerank(query: str, chunks: Sequence[Chunk], k: int, reranker: Reranker) -> list[Chunk]:
    """The k best distinct chunks by the reranker's score, which replaces `score`.

    De-duplicating after the sort touches only the chunks that make the cut; copies have the same
    text, hence the same score, and the sort is stable: the copy fusion ranked first is kept.
    """
    for chunk, score in zip(chunks, reranker(query, chunks), strict=True):
        chunk.score = float(score)
    return deduplicate(sorted(chunks, key=lambda c: c.score, reverse=True), limit=k)
