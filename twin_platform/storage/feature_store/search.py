"""RAG's queries: vector search (HNSW), full-text search, and what hybrid retrieval asks around them.

All return `Chunk` records with `score` set (cosine similarity for vectors, ts_rank_cd for text)
and, where the query vector is known, `similarity`.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from twin_platform.storage.feature_store import hnsw
from twin_platform.storage.feature_store.records import Chunk
from twin_platform.storage.feature_store.writes import embedding_dimension

_HIT_COLUMNS = "chunk_id, document_id, author, category, source_url, content"
# HNSW search settings: ef_search (candidate list size; recall against speed), the iterative scan
# that keeps filtered searches from returning fewer than k rows, and plans made for each statement's
# own parameters: psycopg prepares a repeated statement, and a generic plan for `author = $1` cannot
# use an author's own partial index (hnsw.ensure_author_indexes). `local` true: this transaction only.
HNSW_SETTINGS_SQL = (
    "SELECT set_config('hnsw.ef_search', %s, {local}),"
    " set_config('hnsw.iterative_scan', 'relaxed_order', {local}),"
    " set_config('plan_cache_mode', 'force_custom_plan', {local})"
)


# The ORDER BY of each connection's searches: the expression the HNSW index is built on.
_ORDER_BY: weakref.WeakKeyDictionary[psycopg.Connection, sql.Composable] = (
    weakref.WeakKeyDictionary()
)


def configure_search(conn: psycopg.Connection, ef_search: int) -> None:
    """Set the HNSW settings for the connection's life (a serving pool does it once per connection)."""
    conn.execute(HNSW_SETTINGS_SQL.format(local="false"), (str(ef_search),))
    _ORDER_BY.pop(conn, None)  # read the index again


def _order_by(conn: psycopg.Connection) -> sql.Composable:
    """`embedding <=> q`, or `(embedding::halfvec(d)) <=> q::halfvec` under a halfvec index
    (TWIN_HNSW_STORAGE): a search uses the index only if it orders by the indexed expression.
    Read once per connection once an index exists (`configure_search` forgets it)."""
    order = _ORDER_BY.get(conn)
    if order is None:
        storage = hnsw.indexed_storage(conn)
        key = hnsw.HnswSpec(storage=storage or "vector").key_sql(embedding_dimension(conn))
        order = sql.SQL(f"{key} <=> %s" if storage != "halfvec" else f"{key} <=> %s::halfvec")
        if storage is not None:  # no index yet (a bulk load): look again next time
            _ORDER_BY[conn] = order
    return order


def authors(conn: psycopg.Connection) -> list[str]:
    """The authors with embedded chunks, in order.

    One index probe per author (a recursive walk of the (author, category) index) instead of a
    scan of every chunk.
    """
    rows = conn.execute(
        "WITH RECURSIVE found AS ("
        " (SELECT author FROM embedded_chunks ORDER BY author LIMIT 1)"
        " UNION ALL"
        " SELECT (SELECT e.author FROM embedded_chunks e WHERE e.author > f.author"
        "  ORDER BY e.author LIMIT 1) FROM found f WHERE f.author IS NOT NULL"
        ") SELECT author FROM found WHERE author IS NOT NULL"
    ).fetchall()
    return [author for (author,) in rows]


def _filters(
    author: str | None, categories: Sequence[str] | None
) -> tuple[sql.Composable, list[Any]]:
    clauses: list[sql.Composable] = []
    params: list[Any] = []
    if author:
        clauses.append(sql.SQL("author = %s"))
        params.append(author)
    if categories:
        clauses.append(sql.SQL("category = ANY(%s)"))
        params.append(list(categories))
    where = sql.SQL("WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
    return where, params


def vector_search(
    conn: psycopg.Connection,
    embedding: np.ndarray,
    k: int = 10,
    author: str | None = None,
    categories: Sequence[str] | None = None,
    ef_search: int | None = 40,
) -> list[Chunk]:
    """Top-k chunks by cosine similarity through the HNSW index.

    With a filter, pgvector's iterative scan keeps reading the index until k rows pass it. With
    `ef_search=None` the connection's own settings apply (see `configure_search`): one statement per
    search instead of a transaction of three.
    """
    where, params = _filters(author, categories)
    query = sql.SQL(
        "SELECT {cols}, 1 - (embedding <=> %s) AS score FROM embedded_chunks {where}"
        " ORDER BY {order} LIMIT %s"
    ).format(cols=sql.SQL(_HIT_COLUMNS), where=where, order=_order_by(conn))
    vector = np.asarray(embedding, dtype=np.float32)
    if ef_search is None:
        rows = conn.execute(query, [vector, *params, vector, k]).fetchall()
    else:
        with conn.pipeline(), conn.transaction():  # one round trip: BEGIN, settings, query, COMMIT
            conn.execute(HNSW_SETTINGS_SQL.format(local="true"), (str(max(ef_search, k)),))
            cursor = conn.execute(query, [vector, *params, vector, k])
        rows = cursor.fetchall()
    hits = [_chunk(row, similarity=row[-1]) for row in rows]
    return sorted(hits, key=lambda h: -h.score)


def lexical_search(
    conn: psycopg.Connection,
    query: str,
    k: int = 10,
    author: str | None = None,
    categories: Sequence[str] | None = None,
    similarity_to: np.ndarray | None = None,
) -> list[Chunk]:
    """Top-k chunks by full-text rank (web-search syntax: quotes, OR, -exclusions).

    With `similarity_to`, each hit also carries its cosine similarity to that vector (hybrid search
    needs it for chunks the vector arm did not return), computed for the k kept rows only.
    """
    where, params = _filters(author, categories)
    similarity = sql.SQL("1 - (embedding <=> %s)" if similarity_to is not None else "NULL")
    # The filters apply to the rows the words match: `OFFSET 0` keeps the planner from pushing them
    # into the scan, where it would AND the author's whole btree range (a tenth of a shared store)
    # with the words' posting lists: 8.1 ms a query instead of 2.8 at a million chunks.
    statement = sql.SQL(
        "SELECT {cols}, score, {similarity} FROM ("
        " SELECT {cols}, embedding, ts_rank_cd(content_tsv, websearch_to_tsquery('english', %s))"
        " AS score FROM (SELECT * FROM embedded_chunks"
        "  WHERE content_tsv @@ websearch_to_tsquery('english', %s) OFFSET 0) AS matched"
        " {where} ORDER BY score DESC, chunk_id LIMIT %s) AS top"
        " ORDER BY score DESC, chunk_id"
    ).format(cols=sql.SQL(_HIT_COLUMNS), similarity=similarity, where=where)
    vector = [] if similarity_to is None else [np.asarray(similarity_to, dtype=np.float32)]
    rows = conn.execute(statement, [*vector, query, query, *params, k]).fetchall()
    return [_chunk(row[:-1], similarity=row[-1]) for row in rows]


def similarities(
    conn: psycopg.Connection, chunk_ids: Sequence[str], embedding: np.ndarray
) -> dict[str, float]:
    """Cosine similarity of each of these chunks to a query vector."""
    rows = conn.execute(
        "SELECT chunk_id, 1 - (embedding <=> %s) FROM embedded_chunks WHERE chunk_id = ANY(%s)",
        (np.asarray(embedding, dtype=np.float32), list(chunk_ids)),
    ).fetchall()
    return {chunk_id: float(similarity) for chunk_id, similarity in rows}


@dataclass(frozen=True)
class LexemeStats:
    """How many chunks hold each lexeme, from the planner's statistics of `content_tsv` (free to read,
    refreshed by ANALYZE): the most common lexemes with their shares, and for any other lexeme the
    share the planner itself assumes, half the least common one's."""

    rows: float
    shares: dict[str, float]
    rare_share: float

    def matches(self, lexemes: Sequence[str], max_share: float) -> float | None:
        """Estimated chunks holding all of `lexemes` (a word's stems, ANDed as plainto_tsquery does);
        None for a stopword (no stems) or a word whose stems are all in more than `max_share` of
        chunks: such words rank nothing but make an OR match thousands of rows."""
        if not lexemes or all(self.shares.get(lexeme, 0.0) > max_share for lexeme in lexemes):
            return None
        return self.rows * min(self.shares.get(lexeme, self.rare_share) for lexeme in lexemes)


def lexeme_stats(conn: psycopg.Connection) -> LexemeStats:
    """The statistics `LexemeStats` reads; empty (every word rare) before the first ANALYZE."""
    row = conn.execute(
        "SELECT greatest(c.reltuples, 0), s.most_common_elems::text::text[],"
        " s.most_common_elem_freqs FROM pg_class c LEFT JOIN pg_stats s"
        " ON s.schemaname = current_schema() AND s.tablename = c.relname"
        " AND s.attname = 'content_tsv' WHERE c.oid = 'embedded_chunks'::regclass"
    ).fetchone()
    rows, lexemes, freqs = row if row else (0.0, None, None)
    if not lexemes or not freqs:
        return LexemeStats(float(rows), {}, 0.0)
    # The frequencies are followed by their minimum, their maximum and the share of empty values.
    shares = dict(zip(lexemes, freqs[: len(lexemes)], strict=True))
    return LexemeStats(float(rows), shares, freqs[len(lexemes)] / 2)


def word_lexemes(conn: psycopg.Connection, words: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Each word's English stems as full-text search reads it (none for a stopword)."""
    rows = conn.execute(
        "SELECT w, tsvector_to_array(to_tsvector('english', w)) FROM unnest(%s::text[]) AS w",
        (list(words),),
    ).fetchall()
    return {word: tuple(lexemes) for word, lexemes in rows}


def _chunk(row: tuple[Any, ...], similarity: float | None = None) -> Chunk:
    chunk_id, document_id, author, category, source_url, content, score = row
    return Chunk(
        chunk_id=chunk_id,
        document_id=document_id,
        author=author,
        category=category,
        source_url=source_url,
        content=content,
        score=float(score),
        similarity=None if similarity is None else float(similarity),
    )
