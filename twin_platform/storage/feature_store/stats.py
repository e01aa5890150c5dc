"""Counts and samples of the feature tables, for materialization metadata."""

from __future__ import annotations

from typing import Any

import polars as pl
import psycopg
from psycopg.rows import dict_row


def category_counts(conn: psycopg.Connection, author: str) -> pl.DataFrame:
    """Per category: documents, documents with text, chunks, tokens, embedded chunks."""
    rows = conn.execute(
        "WITH d AS (SELECT category, count(*) AS documents,"
        "   count(*) FILTER (WHERE status IN ('ok', 'truncated')) AS documents_with_text"
        "   FROM cleaned_documents WHERE author = %(a)s GROUP BY 1),"
        " c AS (SELECT category, count(*) AS chunks, coalesce(sum(token_count), 0) AS tokens"
        "   FROM chunks WHERE author = %(a)s GROUP BY 1),"
        " e AS (SELECT category, count(*) AS embedded FROM embedded_chunks WHERE author = %(a)s"
        "   GROUP BY 1)"
        " SELECT category, coalesce(documents, 0), coalesce(documents_with_text, 0),"
        "  coalesce(chunks, 0), coalesce(tokens, 0), coalesce(embedded, 0)"
        " FROM d FULL JOIN c USING (category) FULL JOIN e USING (category) ORDER BY category",
        {"a": author},
    ).fetchall()
    count = pl.Int64
    schema = {
        "category": pl.String,
        "documents": count,
        "documents_with_text": count,
        "chunks": count,
        "tokens": count,
        "embedded": count,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


def token_counts(conn: psycopg.Connection, author: str) -> list[int]:
    rows = conn.execute("SELECT token_count FROM chunks WHERE author = %s", (author,))
    return [count for (count,) in rows]


def sample_chunks(conn: psycopg.Connection, author: str, n: int = 5) -> list[dict[str, Any]]:
    """One chunk per category first, then the rest, deterministic (by chunk id)."""
    cursor = conn.cursor(row_factory=dict_row)
    return cursor.execute(
        "SELECT category, source_url, token_count, content FROM ("
        " SELECT *, row_number() OVER (PARTITION BY category ORDER BY chunk_id) AS rank"
        " FROM chunks WHERE author = %s"
        ") ranked ORDER BY rank, category LIMIT %s",
        (author, n),
    ).fetchall()
