"""What the feature pipeline writes: cleaned documents, chunks and embeddings, in bulk (binary COPY).

Each write runs in its own transaction: a failure leaves the tables as they were before the call.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple, fields
from typing import Any

import numpy as np
import polars as pl
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from twin_platform.storage.feature_store.records import Chunk, CleanedDocument

CLEANED_COLUMNS = tuple(f.name for f in fields(CleanedDocument))
_CLEANED_TYPES = ("text",) * 9 + ("timestamptz", "text", "text")
CHUNK_COLUMNS = (
    "chunk_id",
    "document_id",
    "author",
    "category",
    "source_url",
    "chunk_index",
    "content",
    "token_count",
    "metadata",
)
_CHUNK_TYPES = ("text", "text", "text", "text", "text", "int4", "text", "int4", "jsonb")


@contextmanager
def author_lock(conn: psycopg.Connection, stage: str, author: str) -> Iterator[None]:
    """One writer per (stage, author) at a time: a second run waits instead of racing on chunk ids."""
    key = f"twin-features:{stage}:{author}"
    conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
    try:
        yield
    finally:
        conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))


# -- cleaned documents --------------------------------------------------------------------------------
def cleaned_state(conn: psycopg.Connection, author: str) -> pl.DataFrame:
    """What is stored for an author: document_id, stored_hash, cleaner_version."""
    rows = conn.execute(
        "SELECT document_id, content_hash, cleaner_version FROM cleaned_documents WHERE author = %s",
        (author,),
    ).fetchall()
    return pl.DataFrame(
        rows,
        schema={"document_id": pl.String, "stored_hash": pl.String, "cleaner_version": pl.String},
        orient="row",
    )


def upsert_cleaned(conn: psycopg.Connection, rows: Sequence[CleanedDocument]) -> int:
    """Insert or replace documents; a replaced document is marked for re-chunking."""
    if not rows:
        return 0
    columns = sql.SQL(", ").join(map(sql.Identifier, CLEANED_COLUMNS))
    updates = sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in CLEANED_COLUMNS[1:]
    )
    with conn.transaction():
        conn.execute(
            "CREATE TEMP TABLE _cleaned_in (LIKE cleaned_documents INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        with conn.cursor().copy(
            sql.SQL("COPY _cleaned_in ({}) FROM STDIN WITH (FORMAT BINARY)").format(columns)
        ) as copy:
            copy.set_types(list(_CLEANED_TYPES))
            for row in rows:
                copy.write_row(astuple(row))
        conn.execute(
            sql.SQL(
                "INSERT INTO cleaned_documents ({columns}) SELECT {columns} FROM _cleaned_in "
                "ON CONFLICT (document_id) DO UPDATE SET {updates}, cleaned_at = now(), chunks_version = NULL"
            ).format(columns=columns, updates=updates)
        )
    return len(rows)


def delete_documents(conn: psycopg.Connection, document_ids: Sequence[str]) -> int:
    """Delete documents; their chunks and embedded chunks go with them (ON DELETE CASCADE)."""
    if not document_ids:
        return 0
    with conn.transaction():
        cursor = conn.execute(
            "DELETE FROM cleaned_documents WHERE document_id = ANY(%s)", (list(document_ids),)
        )
    return cursor.rowcount


# -- chunks -------------------------------------------------------------------------------------------
def documents_to_chunk(conn: psycopg.Connection, author: str, fingerprint: str) -> list[str]:
    rows = conn.execute(
        "SELECT document_id FROM cleaned_documents WHERE author = %s"
        " AND chunks_version IS DISTINCT FROM %s ORDER BY document_id",
        (author, fingerprint),
    ).fetchall()
    return [r[0] for r in rows]


def load_documents(conn: psycopg.Connection, document_ids: Sequence[str]) -> list[dict[str, Any]]:
    cursor = conn.cursor(row_factory=dict_row)
    return cursor.execute(
        "SELECT document_id, author, category, url, title, content, status FROM cleaned_documents"
        " WHERE document_id = ANY(%s) ORDER BY document_id",
        (list(document_ids),),
    ).fetchall()


def replace_chunks(
    conn: psycopg.Connection,
    document_ids: Sequence[str],
    chunks: Sequence[Chunk],
    fingerprint: str,
) -> int:
    """The chunks of these documents become exactly `chunks`, in one transaction."""
    with conn.transaction():
        conn.execute("DELETE FROM chunks WHERE document_id = ANY(%s)", (list(document_ids),))
        _copy_chunks(conn, "chunks", chunks)
        conn.execute(
            "UPDATE cleaned_documents SET chunks_version = %s WHERE document_id = ANY(%s)",
            (fingerprint, list(document_ids)),
        )
    return len(chunks)


def _copy_chunks(
    conn: psycopg.Connection,
    table: str,
    chunks: Sequence[Chunk],
    vectors: np.ndarray | None = None,
    model: str | None = None,
) -> None:
    columns = list(CHUNK_COLUMNS) + (
        ["embedding", "embedding_model"] if vectors is not None else []
    )
    types = list(_CHUNK_TYPES) + (["vector", "text"] if vectors is not None else [])
    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.cursor().copy(statement) as copy:
        copy.set_types(types)
        for i, chunk in enumerate(chunks):
            values: tuple[Any, ...] = (
                chunk.chunk_id,
                chunk.document_id,
                chunk.author,
                chunk.category,
                chunk.source_url,
                chunk.chunk_index,
                chunk.content,
                chunk.token_count,
                Jsonb(chunk.metadata),
            )
            if vectors is not None:
                values += (vectors[i], model)
            copy.write_row(values)


# -- embedded chunks ----------------------------------------------------------------------------------
def embedding_dimension(conn: psycopg.Connection) -> int:
    """The declared dimension of embedded_chunks.embedding (vector's typmod)."""
    row = conn.execute(
        "SELECT atttypmod FROM pg_attribute"
        " WHERE attrelid = 'embedded_chunks'::regclass AND attname = 'embedding'"
    ).fetchone()
    assert row is not None
    return int(row[0])


def prune_embeddings(conn: psycopg.Connection, author: str, model: str) -> tuple[int, int]:
    """Delete embedded chunks whose chunk is gone or whose model changed; sync moved chunks' index.

    Returns (deleted, updated)."""
    with conn.transaction():
        deleted = conn.execute(
            "DELETE FROM embedded_chunks e WHERE e.author = %s AND (e.embedding_model <> %s"
            " OR NOT EXISTS (SELECT 1 FROM chunks c WHERE c.chunk_id = e.chunk_id))",
            (author, model),
        ).rowcount
        updated = conn.execute(
            "UPDATE embedded_chunks e SET chunk_index = c.chunk_index, metadata = c.metadata"
            " FROM chunks c WHERE c.chunk_id = e.chunk_id AND e.author = %s"
            " AND (e.chunk_index <> c.chunk_index OR e.metadata <> c.metadata)",
            (author,),
        ).rowcount
    return deleted, updated


_MISSING = (
    "FROM chunks c WHERE c.author = %s"
    " AND NOT EXISTS (SELECT 1 FROM embedded_chunks e WHERE e.chunk_id = c.chunk_id)"
)
# Where a listing of missing chunks starts: before every (token_count, chunk_id).
FIRST_KEY = (-1, "")


def count_missing_embeddings(conn: psycopg.Connection, author: str) -> int:
    row = conn.execute(f"SELECT count(*) {_MISSING}", (author,)).fetchone()
    return int(row[0]) if row else 0


def next_missing_chunks(
    conn: psycopg.Connection, author: str, after: tuple[int, str], limit: int
) -> list[Chunk]:
    """The next `limit` of the author's chunks without a vector after the key (token_count,
    chunk_id) `after`, in that order: shortest first, so that batches of similar length pad less.

    A keyset page (index chunks_author_length, migration 0006): each page costs the same whatever
    the corpus size, and nothing is held between pages, so 1M chunks stream in constant memory.
    """
    cursor = conn.cursor(row_factory=dict_row)
    rows = cursor.execute(
        f"SELECT {', '.join(CHUNK_COLUMNS)} {_MISSING} AND (c.token_count, c.chunk_id) > (%s, %s)"
        " ORDER BY c.token_count, c.chunk_id LIMIT %s",
        (author, *after, limit),
    ).fetchall()
    return [Chunk(**row) for row in rows]


def stored_embeddings(conn: psycopg.Connection, at_most: int) -> int:
    """Rows of embedded_chunks, counted up to `at_most` (enough to compare with a threshold)."""
    row = conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM embedded_chunks LIMIT %s) AS rows", (at_most,)
    ).fetchone()
    return int(row[0]) if row else 0


def insert_embeddings(
    conn: psycopg.Connection, chunks: Sequence[Chunk], vectors: np.ndarray, model: str
) -> int:
    if len(chunks) != len(vectors):
        raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
    with conn.transaction():
        _copy_chunks(conn, "embedded_chunks", chunks, vectors, model)
    return len(chunks)
