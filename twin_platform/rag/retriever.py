"""Hybrid retrieval over `embedded_chunks`: pgvector cosine + Postgres full-text, fused by rank.

Both arms are the feature store's own queries (`feature_store.search.vector_search` / `lexical_search`), run
for every expanded query: the vector arm with the query's embedding through the HNSW index (iterative
scan under filters), the full-text arm with the query's content words joined by OR (a question rarely
contains all of a chunk's words), less the words too common in the corpus to tell chunks apart. The
full-text arm ranks every chunk it matches, so its cost grows with the corpus: it takes the query's
rarest words first (they carry the most weight) and stops before their matches, estimated from the
planner's statistics, pass `max_lexical_matches`; the vector arm carries what the common words say. The
rankings are fused by reciprocal rank (RRF, k=60), which needs no score calibration between arms;
reranking (`rerank.rerank`) then keeps the best k, de-duplicated by text.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import numpy as np
from psycopg_pool import ConnectionPool

from twin_platform.rag.expansion import keywords
from twin_platform.rag.self_query import QueryFilters
from twin_platform.settings import Settings
from twin_platform.storage.feature_store import search
from twin_platform.storage.feature_store.records import Chunk
from twin_platform.storage.postgres import open_pool

RRF_K = 60
WORD = re.compile(r"\w+")
NON_WORD = re.compile(r"\W+")
Encoder = Callable[[list[str]], np.ndarray]
T = TypeVar("T")


def or_query(words: Sequence[str]) -> str:
    """Words joined by OR, in web-search syntax (no operators can slip in: words only)."""
    return " or ".join(w for w in words if WORD.fullmatch(w))


def reciprocal_rank_fusion(chunks: Sequence[Chunk], k: int = RRF_K) -> list[Chunk]:
    """Score = sum over rankings of 1/(k + rank); the order is best first."""
    for chunk in chunks:
        chunk.score = sum(1.0 / (k + rank) for rank in chunk.ranks.values())
    return sorted(chunks, key=lambda c: c.score, reverse=True)


def _content_key(text: str) -> str:
    return hashlib.sha1(NON_WORD.sub(" ", text.lower()).strip().encode()).hexdigest()


def deduplicate(chunks: Sequence[Chunk], limit: int | None = None) -> list[Chunk]:
    """Keep the first (best) of chunks with the same id or the same text (e.g. a cross-posted article).

    Stops once `limit` chunks are kept.
    """
    seen: set[str] = set()
    kept: list[Chunk] = []
    for chunk in chunks:
        if limit is not None and len(kept) >= limit:
            break
        keys = {chunk.chunk_id, _content_key(chunk.content)}
        if keys & seen:
            continue
        seen |= keys
        kept.append(chunk)
    return kept


def merge_rankings(rankings: dict[str, Sequence[Chunk]]) -> dict[str, Chunk]:
    """One chunk per chunk id, holding its rank in every ranking ("vector:0", ...)."""
    merged: dict[str, Chunk] = {}
    for name, hits in rankings.items():
        for rank, hit in enumerate(hits, start=1):
            merged.setdefault(hit.chunk_id, hit).ranks[name] = rank
    return merged


class Refreshed(Generic[T]):
    """A value fetched again once it is `ttl_s` old, by one caller while the others keep the old one.

    Without this, every request that found the value expired fetched it at once (16 concurrent
    requests each waited up to a second on the same query, under load).
    """

    def __init__(self, fetch: Callable[..., T], ttl_s: float) -> None:
        self._fetch = fetch
        self._ttl_s = ttl_s
        self._value: T | None = None
        self._fetched_at = 0.0
        self._lock = threading.Lock()

    def get(self, *args: Any) -> T:
        """The value; a fetch is called with these arguments (e.g. the caller's connection)."""
        value = self._value
        if value is not None and time.monotonic() - self._fetched_at < self._ttl_s:
            return value
        # The first fetch is waited for; a refresh is left to whoever started it.
        if self._lock.acquire(blocking=value is None):
            try:
                if self._value is None or time.monotonic() - self._fetched_at >= self._ttl_s:
                    self._value, self._fetched_at = self._fetch(*args), time.monotonic()
            finally:
                self._lock.release()
        assert self._value is not None
        return self._value


class Retriever:
    """Hybrid search against a psycopg connection pool (`psycopg_pool.ConnectionPool`, autocommit)."""

    def __init__(
        self,
        pool: Any,
        encode: Encoder,
        candidates: int = 20,
        ef_search: int | None = 100,
        max_lexeme_share: float = 0.002,
        max_lexical_matches: int = 2000,
    ) -> None:
        self.pool = pool
        self.encode = encode
        self.candidates = candidates
        self.ef_search = ef_search
        self.max_lexeme_share = max_lexeme_share
        self.max_lexical_matches = max_lexical_matches
        self._authors = Refreshed(self._fetch_authors, ttl_s=60.0)
        self._stats = Refreshed(search.lexeme_stats, ttl_s=300.0)
        self._lexemes: dict[str, tuple[str, ...]] = {}  # a word's stems never change

    def _fetch_authors(self) -> list[str]:
        with self.pool.connection() as conn:
            return search.authors(conn)

    def known_authors(self) -> list[str]:
        """Authors present in the store, fetched again each minute (self-query matches against them)."""
        return self._authors.get()

    def _word_lexemes(self, conn: Any, words: list[str]) -> dict[str, tuple[str, ...]]:
        """Each word's stems, looked up once per word; the dict is replaced, never cleared under
        readers."""
        if len(self._lexemes) > 100_000:
            self._lexemes = {}
        known = self._lexemes
        unknown = [w for w in dict.fromkeys(words) if w not in known]
        if unknown:
            known.update(search.word_lexemes(conn, unknown))
        return {w: known.get(w, ()) for w in words}

    def _lexical_query(self, conn: Any, text: str) -> str:
        """The query's rarest content words joined by OR, as many as keep their estimated matches
        within `max_lexical_matches`; words too common to discriminate are left out.

        Estimates come from the planner's statistics: counting matches fetched every matching row
        (GIN has no index-only scans), 7 ms a query at a million chunks, more than the search."""
        words = WORD.findall(keywords(text))
        if not words:
            return ""
        stats = self._stats.get(conn)
        estimated = {
            word: stats.matches(lexemes, self.max_lexeme_share)
            for word, lexemes in self._word_lexemes(conn, words).items()
        }
        counted = sorted((m, w) for w, m in estimated.items() if m is not None)
        kept: list[str] = []
        total = 0.0
        for count, word in counted:
            if total + count > self.max_lexical_matches:
                break
            kept.append(word)
            total += count
        return or_query(kept)

    def search(
        self, queries: Sequence[str], filters: QueryFilters, embeddings: np.ndarray | None = None
    ) -> list[Chunk]:
        """Fused candidates for every query, best first; reranking de-duplicates what it keeps.

        A chunk's `similarity` is to the original query (the first), whichever arm found it.
        """
        if embeddings is None:
            embeddings = self.encode(list(queries))
        scope: dict[str, Any] = {
            "author": filters.author,
            "categories": [filters.category] if filters.category else None,
        }
        rankings: dict[str, Sequence[Chunk]] = {}
        searched_text: set[str] = set()
        with self.pool.connection() as conn:
            for i, (text, vector) in enumerate(zip(queries, embeddings, strict=True)):
                rankings[f"vector:{i}"] = search.vector_search(
                    conn, vector, k=self.candidates, ef_search=self.ef_search, **scope
                )
                words = self._lexical_query(conn, text)
                if words and words not in searched_text:  # a rewrite may have the same words
                    searched_text.add(words)
                    rankings[f"lexical:{i}"] = search.lexical_search(
                        conn, words, k=self.candidates, similarity_to=embeddings[0], **scope
                    )
            # Hits of the original query's vector arm and of the lexical arms carry their
            # similarity to the original query; those found only by an expansion are looked up.
            similarity = {
                hit.chunk_id: hit.similarity or 0.0
                for name, hits in rankings.items()
                if name == "vector:0" or name.startswith("lexical:")
                for hit in hits
            }
            merged = merge_rankings(rankings)
            missing = [chunk_id for chunk_id in merged if chunk_id not in similarity]
            if missing:
                similarity |= search.similarities(conn, missing, embeddings[0])
        for chunk in merged.values():
            chunk.similarity = float(similarity.get(chunk.chunk_id, 0.0))
        return reciprocal_rank_fusion(list(merged.values()))


def open_search_pool(url: str, ef_search: int, max_size: int = 16) -> ConnectionPool:
    """A pool whose connections carry the HNSW search settings, for `Retriever(ef_search=None)`."""
    return open_pool(url, max_size, configure=lambda conn: search.configure_search(conn, ef_search))


def open_retriever(settings: Settings, database_url: str) -> tuple[Retriever, ConnectionPool]:
    """The retriever the API serves with (its pool, query encoder and candidates), for every
    caller that must find what the API finds: `twin search` and evaluation too. Close the pool."""
    from twin_platform.features.query_encoder import query_encoder

    pool = open_search_pool(database_url, settings.hnsw_ef_search)
    encoder = query_encoder(settings)
    retriever = Retriever(
        pool,
        encoder,
        settings.rag_candidates,
        ef_search=None,
        max_lexical_matches=settings.rag_lexical_max_matches,
    )
    return retriever, pool
