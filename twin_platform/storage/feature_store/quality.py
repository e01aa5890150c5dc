"""The invariants the feature checks gate on, measured in one query."""

from __future__ import annotations

import psycopg
from pydantic import BaseModel

# Each table is read once (a CTE used several times is materialized once); author NULL = everyone.
_QUALITY_SQL = """
WITH c AS (
    SELECT chunk_id, document_id, token_count FROM chunks
    WHERE %(author)s::text IS NULL OR author = %(author)s
), e AS (
    SELECT chunk_id, embedding FROM embedded_chunks
    WHERE %(author)s::text IS NULL OR author = %(author)s
)
SELECT
    (SELECT count(*) FROM c),
    (SELECT count(*) FROM e),
    (SELECT count(*) FROM e WHERE vector_dims(embedding) <> %(dimension)s),
    (SELECT count(*) FROM e WHERE abs(vector_norm(embedding) - 1) > %(tolerance)s),
    (SELECT count(*) - count(DISTINCT chunk_id) FROM c)
        + (SELECT count(*) - count(DISTINCT chunk_id) FROM e),
    (SELECT count(*) FROM c WHERE token_count > %(max_tokens)s),
    (SELECT count(*) FROM c WHERE NOT EXISTS
        (SELECT 1 FROM cleaned_documents d WHERE d.document_id = c.document_id)),
    (SELECT count(*) FROM e WHERE NOT EXISTS (SELECT 1 FROM chunks x WHERE x.chunk_id = e.chunk_id)),
    (SELECT count(*) FROM c WHERE NOT EXISTS
        (SELECT 1 FROM embedded_chunks x WHERE x.chunk_id = c.chunk_id)),
    (SELECT coalesce(max(token_count), 0) FROM c)
"""


class FeatureQuality(BaseModel):
    """Every count should be 0 except the totals and the longest chunk."""

    chunks: int
    embedded: int
    wrong_dimension: int
    not_unit_norm: int
    duplicate_chunk_ids: int
    over_token_limit: int
    orphan_chunks: int
    orphan_embeddings: int
    missing_embeddings: int
    max_tokens_seen: int


def measure_quality(
    conn: psycopg.Connection,
    author: str | None,
    dimension: int,
    max_tokens: int,
    norm_tolerance: float = 1e-3,
) -> FeatureQuality:
    params = {
        "author": author,
        "dimension": dimension,
        "tolerance": norm_tolerance,
        "max_tokens": max_tokens,
    }
    row = conn.execute(_QUALITY_SQL, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return FeatureQuality(**dict(zip(FeatureQuality.model_fields, map(int, row), strict=True)))
