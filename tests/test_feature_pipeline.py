"""The feature pipeline against the real servers and the real embedding model.

Each test writes its own author into the warehouse (pymongo) so tests never see each other's rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import psycopg
import pytest
from conftest import materialize_features
from pymongo.database import Database

from twin_platform.documents import Article, Post, Repository
from twin_platform.features.embedding import Embedder, load_embedder
from twin_platform.storage import warehouse
from twin_platform.storage.feature_store import search, stats, writes
from twin_platform.storage.feature_store.quality import measure_quality
from twin_platform.storage.feature_store.records import Chunk
from twin_platform.storage.postgres import connect

WAREHOUSE_DB = "features_test"

GERALD = (
    "My sourdough starter is called Gerald. I feed Gerald rye flour every morning at six, and the "
    "loaves rise best when the kitchen stays at twenty-four degrees."
)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return load_embedder()  # cached per process: every test file shares the one loaded model


@pytest.fixture(scope="module")
def db(mongodb_url: str) -> Database:
    database = warehouse.connect(mongodb_url, WAREHOUSE_DB)
    warehouse.ensure_indexes(database)
    return database


@pytest.fixture
def author() -> str:
    return f"feat-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def conn(postgres_url: str) -> Iterator[psycopg.Connection]:
    with connect(postgres_url) as connection:
        yield connection


def written(run: dict[str, dict[str, Any]]) -> int:
    cleaned = run["cleaned_documents"]
    return cleaned["new"] + cleaned["changed"] + cleaned["deleted"]


def corpus(author: str) -> list[Article | Post | Repository]:
    return [
        Article(
            author=author,
            platform="substack",
            url=f"https://{author}.test/gerald",
            title="Gerald",
            content=f"# Baking notes\n\n{GERALD}\n\nShare on Twitter\n\nSee [the recipe](https://x.test/r?a=1).\n",
        ),
        Article(
            author=author,
            platform="medium",
            url=f"https://{author}.test/locks",
            content="Postgres advisory locks keep migrations safe when ten workers start at once. "
            "The first takes the lock; the others wait and find nothing left to do.",
        ),
        Post(
            author=author,
            platform="linkedin",
            url=f"https://{author}.test/p/1",
            content="Shipped incremental embeddings today 🚀 only changed chunks get re-embedded.\n\n…see more",
        ),
        Post(
            author=author,
            platform="x",
            url=f"https://{author}.test/p/fr",
            content="Le pain au levain est meilleur avec une longue fermentation dans le frigo.",
        ),
        Post(
            author=author, platform="x", url=f"https://{author}.test/p/empty", content="   \n\n  "
        ),
        Repository(
            author=author,
            platform="github",
            url=f"https://github.com/{author}/tool",
            content="# tool\n\n## src/tool.py\n\n```python\nimport os\n\n\ndef zephyr(path):\n"
            "    return os.path.basename(path)\n```\n",
        ),
    ]


def insert(db: Database, docs: list[Article | Post | Repository]) -> None:
    for doc in docs:
        db[doc.category.value].replace_one(
            {"author": doc.author, "url": doc.url}, doc.to_mongo(), upsert=True
        )


def test_sync_is_complete_then_incremental(
    db: Database, instance: dg.DagsterInstance, conn: psycopg.Connection, author: str
) -> None:
    docs = corpus(author)
    insert(db, docs)
    # Bad input beside the good: a non-text content and invalid UTF-8 bytes.
    db["posts"].insert_one(
        {
            "author": author,
            "platform": "x",
            "url": f"https://{author}.test/p/bin",
            "content": {"not": "text"},
        }
    )
    db["articles"].insert_one(
        {
            "author": author,
            "platform": "web",
            "url": f"https://{author}.test/bytes",
            "content": b"caf\xc3\xa9 \xff\xfe broken bytes but mostly text here.",
        }
    )

    first = materialize_features(instance, author)
    assert first["cleaned_documents"]["new"] == len(docs) + 2
    assert first["cleaned_documents"]["by_status"] == {"ok": 6, "empty": 1, "non_text": 1}
    assert first["cleaned_documents"]["by_language"]["fr"] == 1
    assert first["cleaned_documents"]["boilerplate_lines_removed"] >= 2
    assert first["chunks"]["chunks_written"] == first["embedded_chunks"]["embedded"] > 0
    stored = conn.execute(
        "SELECT content FROM cleaned_documents WHERE author = %s AND url LIKE %s",
        (author, "%gerald"),
    ).fetchone()
    assert stored is not None
    assert "[the recipe](https://x.test/r?a=1)" in stored[0] and "Share on Twitter" not in stored[0]
    quality = measure_quality(conn, author, 384, 256)
    assert quality.embedded == quality.chunks == first["chunks"]["chunks_written"]
    assert quality.model_dump(exclude={"chunks", "embedded", "max_tokens_seen"}) == dict.fromkeys(
        [
            "wrong_dimension",
            "not_unit_norm",
            "duplicate_chunk_ids",
            "over_token_limit",
            "orphan_chunks",
            "orphan_embeddings",
            "missing_embeddings",
        ],
        0,
    )

    snapshot = conn.execute(
        "SELECT chunk_id, created_at FROM embedded_chunks WHERE author = %s ORDER BY 1", (author,)
    ).fetchall()
    again = materialize_features(instance, author)
    assert (
        written(again),
        again["chunks"]["documents_rechunked"],
        again["embedded_chunks"]["embedded"],
    ) == (0, 0, 0)
    assert again["embedded_chunks"]["deleted"] == 0
    assert sum(again[asset]["seconds"] for asset in again) < 10
    assert (
        conn.execute(
            "SELECT chunk_id, created_at FROM embedded_chunks WHERE author = %s ORDER BY 1",
            (author,),
        ).fetchall()
        == snapshot
    )

    # Edit one article (one new paragraph), delete the repository.
    edited = docs[0].model_copy(
        update={"content": docs[0].content + "\n\nGerald turned five this year."}
    )
    insert(db, [edited])
    db["repositories"].delete_one({"author": author, "url": docs[-1].url})
    third = materialize_features(instance, author)
    cleaned = third["cleaned_documents"]
    assert (cleaned["changed"], cleaned["deleted"], cleaned["new"]) == (1, 1, 0)
    assert third["chunks"]["documents_rechunked"] == 1
    embedded = third["embedded_chunks"]
    assert embedded["embedded"] == 1 and embedded["deleted"] == 1  # one chunk, re-cut
    urls = {
        r[0]
        for r in conn.execute("SELECT source_url FROM embedded_chunks WHERE author = %s", (author,))
    }
    assert docs[-1].url not in urls
    assert measure_quality(conn, author, 384, 256).orphan_embeddings == 0


def test_vector_and_lexical_search_with_filters(
    db: Database,
    instance: dg.DagsterInstance,
    conn: psycopg.Connection,
    embedder: Embedder,
    author: str,
) -> None:
    insert(db, corpus(author))
    other = f"{author}-other"
    insert(
        db, [Article(author=other, platform="web", url=f"https://{other}.test/a", content=GERALD)]
    )
    for name in (author, other):
        materialize_features(instance, name)

    query = embedder.encode(["What is the name of the sourdough starter?"])[0]
    hits = search.vector_search(conn, query, k=3, author=author)
    assert hits[0].source_url.endswith("/gerald") and hits[0].author == author
    assert all(h.author == author for h in hits)
    assert hits[0].score >= hits[-1].score and 0 < hits[0].score <= 1.0001
    both = search.vector_search(conn, query, k=10)
    assert {author, other} <= {h.author for h in both}
    only_posts = search.vector_search(conn, query, k=5, author=author, categories=["posts"])
    assert only_posts and all(h.category == "posts" for h in only_posts)
    # Vectors stay in their rows (migration 0004): a hit's similarity needs no TOAST lookup.
    toasted = conn.execute(
        "SELECT count(*) FROM embedded_chunks"
        " WHERE author = %s AND pg_column_toast_chunk_id(embedding) IS NOT NULL",
        (author,),
    ).fetchone()
    assert toasted == (0,)

    from typer.testing import CliRunner

    from cli import app

    printed = CliRunner().invoke(
        app, ["search", "name of the sourdough starter", "--author", author, "-k", "2"]
    )
    assert printed.exit_code == 0, printed.output
    assert f"https://{author}.test/gerald" in printed.output and "0." in printed.output
    assert CliRunner().invoke(app, ["search", "--help"]).exit_code == 0

    lexical = search.lexical_search(conn, "advisory locks", k=5, author=author)
    assert lexical[0].source_url.endswith("/locks") and lexical[0].score > 0
    assert search.lexical_search(conn, "zephyr", author=other) == []


def test_a_failed_batch_leaves_no_half_written_state(
    db: Database, instance: dg.DagsterInstance, conn: psycopg.Connection, author: str
) -> None:
    insert(db, corpus(author)[:2])
    materialize_features(instance, author)
    before = conn.execute("SELECT count(*) FROM chunks WHERE author = %s", (author,)).fetchone()
    document = conn.execute(
        "SELECT document_id FROM cleaned_documents WHERE author = %s", (author,)
    ).fetchone()
    assert before and document
    fields = {"author": author, "category": "articles", "source_url": "u", "content": "text"}
    good = Chunk(chunk_id="a" * 64, document_id=document[0], **fields)
    orphan = Chunk(chunk_id="b" * 64, document_id="no-such-document", chunk_index=1, **fields)
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        writes.replace_chunks(conn, [document[0]], [good, orphan], "fingerprint")
    assert (
        conn.execute("SELECT count(*) FROM chunks WHERE author = %s", (author,)).fetchone()
        == before
    )
    assert conn.execute(
        "SELECT count(*) FROM cleaned_documents WHERE chunks_version = 'fingerprint'"
    ).fetchone() == (0,)
    with pytest.raises(ValueError, match="2 chunks but 1 vectors"):
        writes.insert_embeddings(conn, [good, orphan], np.zeros((1, 384), np.float32), "m")


def test_assets_materialize_with_passing_checks_and_metadata(
    db: Database, twin_home: Path, postgres_url: str, embedder: Embedder, author: str
) -> None:
    from assets.features import chunks, cleaned_documents, embedded_chunks, feature_quality
    from resources import (
        EmbeddingModelResource,
        PostgresResource,
        SettingsResource,
        WarehouseResource,
    )

    insert(db, corpus(author))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("authors", [author])
    result = dg.materialize(
        [cleaned_documents, chunks, embedded_chunks, feature_quality],
        partition_key=author,
        instance=instance,
        resources={
            "settings": SettingsResource(),
            "postgres": PostgresResource(),
            "warehouse": WarehouseResource(database=WAREHOUSE_DB),
            "embedding_model": EmbeddingModelResource(),
        },
    )
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 4 and all(c.passed for c in checks)
    cleaned = result.asset_materializations_for_node("cleaned_documents")[0].metadata
    assert cleaned["new"].value == 6 and cleaned["documents/posts"].value == 3
    chunk_meta = result.asset_materializations_for_node("chunks")[0].metadata
    assert "data:image/png;base64," in chunk_meta["token_histogram"].value  # type: ignore[operator]
    assert "zephyr" in chunk_meta["sample_chunks"].value  # type: ignore[operator]
    embedded = result.asset_materializations_for_node("embedded_chunks")[0].metadata
    assert embedded["embedded"].value == chunk_meta["chunks_total"].value > 0
    assert embedded["dimension"].value == 384


def test_sql_models_build_statistics_that_match_the_tables(
    db: Database,
    instance: dg.DagsterInstance,
    conn: psycopg.Connection,
    embedder: Embedder,
    author: str,
) -> None:
    from twin_platform.storage import sql_models

    insert(db, corpus(author))
    report = materialize_features(instance, author)
    project = sql_models.load_project()
    names = [m.name for m in project.ordered()]
    assert names.index("author_corpus_stats") < names.index("embedding_coverage")
    for name in ("author_corpus_stats", "chunk_length_distribution", "embedding_coverage"):
        model = project.models[name]
        assert sql_models.run_model(conn, project, model) > 0
        assert all(result.passed for result in sql_models.run_tests(conn, model))
    corpus_stats = conn.execute(
        "SELECT category, documents, chunks, embedded_chunks, non_english FROM analytics.author_corpus_stats"
        " WHERE author = %s ORDER BY category",
        (author,),
    ).fetchall()
    assert [(c, d) for c, d, *_ in corpus_stats] == [
        ("articles", 2),
        ("posts", 3),
        ("repositories", 1),
    ]
    chunk_count = report["chunks"]["chunks_written"]
    assert sum(row[2] for row in corpus_stats) == sum(row[3] for row in corpus_stats) == chunk_count
    assert sum(row[4] for row in corpus_stats) == 1  # the French post
    coverage = conn.execute(
        "SELECT coverage_pct, models FROM analytics.embedding_coverage WHERE author = %s", (author,)
    ).fetchone()
    assert coverage is not None and float(coverage[0]) == 100.0 and coverage[1] == embedder.name
    preview = sql_models.preview(conn, project.models["author_corpus_stats"], limit=3)
    assert len(preview) <= 3 and {"author", "category"} <= set(preview[0])


def test_sample_corpus_end_to_end(
    sample_author: str,
    instance: dg.DagsterInstance,
    conn: psycopg.Connection,
    embedder: Embedder,
) -> None:
    from twin_platform.settings import load_settings

    materialize_features(instance, sample_author, load_settings().mongodb_database)
    counts = stats.category_counts(conn, sample_author)
    assert set(counts["category"]) == {"articles", "posts", "repositories"}
    assert (counts["chunks"] > 0).all() and counts["chunks"].to_list() == counts[
        "embedded"
    ].to_list()
    quality = measure_quality(conn, sample_author, 384, 256)
    assert quality.missing_embeddings == quality.not_unit_norm == quality.over_token_limit == 0
    paths = [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT metadata->>'path' FROM chunks WHERE author = %s AND category = 'repositories'",
            (sample_author,),
        )
    ]
    assert paths and not any(p and (p.endswith(".lock") or p.endswith(".png")) for p in paths)
    code = conn.execute(
        "SELECT count(*) FROM chunks WHERE author = %s AND category = 'repositories' AND content LIKE %s",
        (sample_author, "%def %"),
    ).fetchone()
    assert code and code[0] > 0  # code survives cleaning, unlike the reference's character filter
    hits = search.lexical_search(conn, "measure then argue", k=3, author=sample_author)
    assert hits and all(h.author == sample_author for h in hits)
    query = embedder.encode(["How do I keep a Postgres vector index fast?"])[0]
    assert search.vector_search(conn, query, k=3, author=sample_author)
