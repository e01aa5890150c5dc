"""Hybrid retrieval over `embedded_chunks`: pgvector cosine + Postgres full-text, fused by rank.

Both arms are the feature store's own queries (`features.store.vector_search` / `lexical_search`), run
for every expanded query: the vector arm with the query's embedding through the HNSW index (iterative
scan under filters), the full-text arm with the query's content words joined by OR (a question rarely
contains all of a chunk's words), less the words too common in the corpus to tell chunks apart. The
rankings are fused by reciprocal rank (RRF, k=60), which needs no score calibration between arms;
reranking (`rerank.rerank`) then keeps the best k, de-duplicated by text.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from twin_platform.features import store
from twin_platform.rag.expansion import keywords
from twin_platform.rag.self_query import QueryFilters

RRF_K = 60
WORD = re.compile(r"\w+")
NON_WORD = re.compile(r"\W+")
Encoder = Callable[[list[str]], np.ndarray]
T = TypeVar("T")


@dataclass
class RetrievedChunk:
    """One chunk as retrieval returns it; `score` is the fused (then reranked) score, higher is better."""

    chunk_id: str
    document_id: str
    author: str
    category: str
    source_url: str
    content: str
    similarity: float = 0.0  # cosine similarity to the original query
    score: float = 0.0
    ranks: dict[str, int] = field(default_factory=dict)  # "vector:0" -> 1, "lexical:1" -> 3, ...


def or_query(words: Sequence[str]) -> str:
    """Words joined by OR, in web-search syntax (no operators can slip in: words only)."""
    return " or ".join(w for w in words if WORD.fullmatch(w))


def common_lexemes(conn: Any, max_share: float) -> set[str]:
    """Lexemes in more than `max_share` of chunks, from the planner's statistics (free to read).

    Such words rank nothing (every chunk has them) but make an OR match thousands of rows: the
    full-text arm leaves them out, like stopwords chosen by the corpus itself.
    """
    row = conn.execute(
        "SELECT most_common_elems::text::text[], most_common_elem_freqs FROM pg_stats"
        " WHERE tablename = 'embedded_chunks' AND attname = 'content_tsv'"
    ).fetchone()
    if not row or not row[0]:
        return set()
    return {lexeme for lexeme, share in zip(row[0], row[1], strict=False) if share > max_share}


def reciprocal_rank_fusion(
    chunks: Sequence[RetrievedChunk], k: int = RRF_K
) -> list[RetrievedChunk]:
    """Score = sum over rankings of 1/(k + rank); the order is best first."""
    for chunk in chunks:
        chunk.score = sum(1.0 / (k + rank) for rank in chunk.ranks.values())
    return sorted(chunks, key=lambda c: c.score, reverse=True)


def _content_key(text: str) -> str:
    return hashlib.sha1(NON_WORD.sub(" ", text.lower()).strip().encode()).hexdigest()


def deduplicate(chunks: Sequence[RetrievedChunk], limit: int | None = None) -> list[RetrievedChunk]:
    """Keep the first (best) of chunks with the same id or the same text (e.g. a cross-posted article).

    Stops once `limit` chunks are kept.
    """
    seen: set[str] = set()
    kept: list[RetrievedChunk] = []
    for chunk in chunks:
        if limit is not None and len(kept) >= limit:
            break
        keys = {chunk.chunk_id, _content_key(chunk.content)}
        if keys & seen:
            continue
        seen |= keys
        kept.append(chunk)
    return kept


def merge_rankings(rankings: dict[str, Sequence[store.ChunkHit]]) -> dict[str, RetrievedChunk]:
    """One RetrievedChunk per chunk id, holding its rank in every ranking ("vector:0", ...)."""
    merged: dict[str, RetrievedChunk] = {}
    for name, hits in rankings.items():
        for rank, hit in enumerate(hits, start=1):
            chunk = merged.get(hit.chunk_id)
            if chunk is None:
                chunk = merged[hit.chunk_id] = RetrievedChunk(
                    hit.chunk_id,
                    hit.document_id,
                    hit.author,
                    hit.category,
                    hit.source_url,
                    hit.content,
                )
            chunk.ranks[name] = rank
    return merged


class BatchedEncoder:
    """Embeds queries from many threads in shared batches: one model call serves every waiting request.

    A batch of 16 short queries costs about as much as two single ones on CPU, so under concurrent
    load this multiplies throughput; a lone request waits at most `max_wait_s` for company.
    """

    def __init__(self, encode: Encoder, max_batch: int = 64, max_wait_s: float = 0.002) -> None:
        self._encode = encode
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._pending: list[tuple[str, Future[np.ndarray]]] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="query-encoder", daemon=True)
        self._thread.start()

    def __call__(self, texts: list[str]) -> np.ndarray:
        futures: list[Future[np.ndarray]] = [Future() for _ in texts]
        with self._cond:
            self._pending.extend(zip(texts, futures, strict=True))
            self._cond.notify()
        return np.stack([f.result() for f in futures])

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
            time.sleep(self._max_wait_s)  # let concurrent requests join this batch
            with self._cond:
                batch, self._pending = (
                    self._pending[: self._max_batch],
                    self._pending[self._max_batch :],
                )
            try:
                vectors = self._encode([text for text, _ in batch])
            except Exception as exc:  # handed to every waiting caller, who raises it
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, future), vector in zip(batch, vectors, strict=True):
                future.set_result(vector)


def default_encoder(model: str, device: str = "auto") -> Encoder:
    """The feature pipeline's embedding model (TWIN_EMBEDDING_MODEL): queries and chunks share one space."""
    from twin_platform.features.embedding import load_embedder

    return load_embedder(model, device).encode


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
    ) -> None:
        self.pool = pool
        self.encode = encode
        self.candidates = candidates
        self.ef_search = ef_search
        self.max_lexeme_share = max_lexeme_share
        self._authors = Refreshed(self._fetch_authors, ttl_s=60.0)
        self._common = Refreshed(
            lambda conn: common_lexemes(conn, self.max_lexeme_share), ttl_s=300.0
        )
        self._word_lexemes: dict[str, frozenset[str]] = {}

    def _fetch_authors(self) -> list[str]:
        with self.pool.connection() as conn:
            return store.authors(conn)

    def known_authors(self) -> list[str]:
        """Authors present in the store, fetched again each minute (self-query matches against them)."""
        return self._authors.get()

    def _lexemes(self, conn: Any, words: list[str]) -> dict[str, frozenset[str]]:
        """Each word's Postgres lexemes (its stems), asked once per word and then remembered."""
        found = {w: self._word_lexemes.get(w) for w in words}
        unknown = [w for w, lexemes in found.items() if lexemes is None]
        if unknown:
            rows = conn.execute(
                "SELECT w, tsvector_to_array(to_tsvector('english', w)) FROM unnest(%s::text[]) AS w",
                (unknown,),
            ).fetchall()
            fetched = {w: frozenset(lexemes or ()) for w, lexemes in rows}
            if (
                len(self._word_lexemes) > 100_000
            ):  # bounded: a new dict, never a clear under readers
                self._word_lexemes = {}
            self._word_lexemes.update(fetched)
            found.update(fetched)
        return {w: lexemes or frozenset() for w, lexemes in found.items()}

    def _lexical_query(self, conn: Any, text: str) -> str:
        """The query's content words, less those too common to discriminate, joined by OR."""
        words = WORD.findall(keywords(text))
        common = self._common.get(conn) if words else set()
        if common:
            lexemes = self._lexemes(conn, words)
            words = [w for w in words if lexemes[w] and not lexemes[w] <= common]
        return or_query(words)

    def search(
        self, queries: Sequence[str], filters: QueryFilters, embeddings: np.ndarray | None = None
    ) -> list[RetrievedChunk]:
        """Fused candidates for every query, best first; reranking de-duplicates what it keeps.

        A chunk's `similarity` is to the original query (the first), whichever arm found it.
        """
        if embeddings is None:
            embeddings = self.encode(list(queries))
        scope: dict[str, Any] = {
            "author": filters.author,
            "categories": [filters.category] if filters.category else None,
        }
        rankings: dict[str, Sequence[store.ChunkHit]] = {}
        searched_text: set[str] = set()
        with self.pool.connection() as conn:
            for i, (text, vector) in enumerate(zip(queries, embeddings, strict=True)):
                rankings[f"vector:{i}"] = store.vector_search(
                    conn, vector, k=self.candidates, ef_search=self.ef_search, **scope
                )
                words = self._lexical_query(conn, text)
                if words and words not in searched_text:  # a rewrite may have the same words
                    searched_text.add(words)
                    rankings[f"lexical:{i}"] = store.lexical_search(
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
                similarity |= dict(
                    conn.execute(
                        "SELECT chunk_id, 1 - (embedding <=> %s) FROM embedded_chunks"
                        " WHERE chunk_id = ANY(%s)",
                        (np.asarray(embeddings[0], dtype=np.float32), missing),
                    ).fetchall()
                )
        for chunk in merged.values():
            chunk.similarity = float(similarity.get(chunk.chunk_id, 0.0))
        return reciprocal_rank_fusion(list(merged.values()))


def open_pool(url: str, max_size: int = 16, ef_search: int | None = None) -> Any:
    """A pool of autocommit connections that know pgvector's types (the store's functions expect both).

    With `ef_search`, every connection gets the HNSW search settings once, for `Retriever(ef_search=None)`.
    """
    from pgvector.psycopg import register_vector
    from psycopg_pool import ConnectionPool

    def configure(conn: Any) -> None:
        register_vector(conn)
        if ef_search is not None:
            conn.execute(store.HNSW_SETTINGS_SQL.format(local="false"), (str(ef_search),))

    pool = ConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        configure=configure,
        kwargs={"autocommit": True},
        open=True,
    )
    pool.wait(timeout=30)
    return pool
