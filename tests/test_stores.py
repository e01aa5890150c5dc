"""The stores do what the pipelines rely on: pgvector HNSW search, Mongo upserts and aggregates."""

from __future__ import annotations

import numpy as np
import pymongo
import pymongo.errors
import pytest

from twin_platform.documents import Category
from twin_platform.storage import postgres as pg_store
from twin_platform.storage import warehouse


def test_hnsw_query_returns_the_true_nearest_neighbours(postgres_url: str) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(2000, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    query = vectors[7] + 0.05 * rng.normal(size=384).astype(np.float32)
    query /= np.linalg.norm(query)
    exact = set(np.argsort(-(vectors @ query))[:10].tolist())

    with pg_store.connect(postgres_url) as conn:
        conn.execute("DROP TABLE IF EXISTS hnsw_probe")
        conn.execute("CREATE TABLE hnsw_probe (id int PRIMARY KEY, embedding vector(384))")
        with conn.cursor().copy(
            "COPY hnsw_probe (id, embedding) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int4", "vector"])
            for i, vector in enumerate(vectors):
                copy.write_row((i, vector))
        conn.execute("CREATE INDEX ON hnsw_probe USING hnsw (embedding vector_cosine_ops)")
        conn.execute("SET hnsw.ef_search = 100")
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                "EXPLAIN SELECT id FROM hnsw_probe ORDER BY embedding <=> %s LIMIT 10", (query,)
            )
        )
        found = {
            row[0]
            for row in conn.execute(
                "SELECT id FROM hnsw_probe ORDER BY embedding <=> %s LIMIT 10", (query,)
            )
        }
    assert "hnsw" in plan
    assert 7 in found
    assert len(found & exact) >= 9


def test_upsert_unique_index_and_aggregate(mongodb_url: str) -> None:
    db = warehouse.connect(mongodb_url, "store_test")
    warehouse.ensure_indexes(db)
    warehouse.ensure_indexes(db)  # idempotent
    posts = db[Category.POSTS]
    for _ in range(3):
        posts.update_one(
            {"author": "ada", "url": "https://x.test/1"},
            {"$set": {"content": "hello", "content_hash": "h1"}},
            upsert=True,
        )
    posts.update_one(
        {"author": "bob", "url": "https://x.test/1"}, {"$set": {"content": "hi"}}, upsert=True
    )
    assert posts.count_documents({}) == 2
    with pytest.raises(pymongo.errors.DuplicateKeyError):
        posts.insert_one({"author": "ada", "url": "https://x.test/1"})
    by_author = posts.aggregate([{"$group": {"_id": "$author", "n": {"$sum": 1}}}])
    assert {row["_id"]: row["n"] for row in by_author} == {"ada": 1, "bob": 1}
