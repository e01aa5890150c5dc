"""The feature pipeline against the real servers and the real embedding model.

Each test writes its own author into the warehouse (pymongo) so tests never see each other's rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import numpy as np
import psycopg
import pytest
from pymongo.database import Database

from twin_platform.documents import Article, Post, Repository
from twin_platform.features import pipeline, store
from twin_platform.features.embedding import Embedder, load_embedder
from twin_platform.storage import postgres as pg_store
from twin_platform.storage import warehouse

GERALD = (
    "My sourdough starter is called Gerald. I feed Gerald rye flour every morning at six, and the "
    "loaves rise best when the kitchen stays at twenty-four degrees."
)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return load_embedder()  # cached per process: every test file shares the one loaded model


@pytest.fixture(scope="module")
def db(mongodb_url: str) -> Database:
    database = warehouse.connect(mongodb_url, "features_test")
    warehouse.ensure_indexes(database)
    return database


@pytest.fixture
def author() -> str:
    return f"feat-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def conn(postgres_url: str) -> Iterator[psycopg.Connection]:
    with pg_store.connect(postgres_url, autocommit=True) as connection:
        yield connection


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
    db: Database, postgres_url: str, conn: psycopg.Connection, embedder: Embedder, author: str
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

    first = pipeline.sync_author(db, postgres_url, author, embedder)
    assert first.cleaning.new == len(docs) + 2
    assert first.cleaning.by_status == {"ok": 6, "empty": 1, "non_text": 1}
    assert first.cleaning.by_language["fr"] == 1
    assert first.cleaning.boilerplate_lines_removed >= 2
    assert first.chunking.chunks == first.embedding.embedded > 0
    stored = conn.execute(
        "SELECT content FROM cleaned_documents WHERE author = %s AND url LIKE %s",
        (author, "%gerald"),
    ).fetchone()
    assert stored is not None
    assert "[the recipe](https://x.test/r?a=1)" in stored[0] and "Share on Twitter" not in stored[0]
    quality = store.quality(conn, author, 384, 256)
    assert quality.embedded == quality.chunks == first.chunking.chunks
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
    again = pipeline.sync_author(db, postgres_url, author, embedder)
    assert (again.cleaning.written, again.chunking.documents, again.embedding.embedded) == (0, 0, 0)
    assert again.embedding.deleted == 0
    assert again.cleaning.seconds + again.chunking.seconds + again.embedding.seconds < 10
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
    third = pipeline.sync_author(db, postgres_url, author, embedder)
    assert (third.cleaning.changed, third.cleaning.deleted, third.cleaning.new) == (1, 1, 0)
    assert third.chunking.documents == 1
    assert third.embedding.embedded == 1 and third.embedding.deleted == 1  # one chunk, re-cut
    urls = {
        r[0]
        for r in conn.execute("SELECT source_url FROM embedded_chunks WHERE author = %s", (author,))
    }
    assert docs[-1].url not in urls
    assert store.quality(conn, author, 384, 256).orphan_embeddings == 0


def test_vector_and_lexical_search_with_filters(
    db: Database, postgres_url: str, conn: psycopg.Connection, embedder: Embedder, author: str
) -> None:
    insert(db, corpus(author))
    other = f"{author}-other"
    insert(
        db, [Article(author=other, platform="web", url=f"https://{other}.test/a", content=GERALD)]
    )
    for name in (author, other):
        pipeline.sync_author(db, postgres_url, name, embedder)

    query = embedder.encode(["What is the name of the sourdough starter?"])[0]
    hits = store.vector_search(conn, query, k=3, author=author)
    assert hits[0].source_url.endswith("/gerald") and hits[0].author == author
    assert all(h.author == author for h in hits)
    assert hits[0].score >= hits[-1].score and 0 < hits[0].score <= 1.0001
    both = store.vector_search(conn, query, k=10)
    assert {author, other} <= {h.author for h in both}
    only_posts = store.vector_search(conn, query, k=5, author=author, categories=["posts"])
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

    lexical = store.lexical_search(conn, "advisory locks", k=5, author=author)
    assert lexical[0].source_url.endswith("/locks") and lexical[0].score > 0
    assert store.lexical_search(conn, "zephyr", author=other) == []


def test_a_failed_batch_leaves_no_half_written_state(
    db: Database, postgres_url: str, conn: psycopg.Connection, embedder: Embedder, author: str
) -> None:
    insert(db, corpus(author)[:2])
    pipeline.sync_author(db, postgres_url, author, embedder)
    before = conn.execute("SELECT count(*) FROM chunks WHERE author = %s", (author,)).fetchone()
    document = conn.execute(
        "SELECT document_id FROM cleaned_documents WHERE author = %s", (author,)
    ).fetchone()
    assert before and document
    good = store.ChunkRow("a" * 64, document[0], author, "articles", "u", 0, "text", 3, {})
    orphan = store.ChunkRow("b" * 64, "no-such-document", author, "articles", "u", 1, "text", 3, {})
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        store.replace_chunks(conn, [document[0]], [good, orphan], "fingerprint")
    assert (
        conn.execute("SELECT count(*) FROM chunks WHERE author = %s", (author,)).fetchone()
        == before
    )
    assert conn.execute(
        "SELECT count(*) FROM cleaned_documents WHERE chunks_version = 'fingerprint'"
    ).fetchone() == (0,)
    with pytest.raises(ValueError, match="2 chunks but 1 vectors"):
        store.insert_embeddings(conn, [good, orphan], np.zeros((1, 384), np.float32), "m")


def test_assets_materialize_with_passing_checks_and_metadata(
    db: Database, twin_home: Path, postgres_url: str, embedder: Embedder, author: str
) -> None:
    from assets.features import (
        chunk_ids_are_unique,
        chunks,
        chunks_fit_the_model,
        cleaned_documents,
        embedded_chunks,
        embeddings_are_complete_unit_vectors,
        no_orphan_chunks,
    )
    from resources import EmbeddingModelResource, PostgresResource, WarehouseResource

    insert(db, corpus(author))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("authors", [author])
    result = dg.materialize(
        [
            cleaned_documents,
            chunks,
            embedded_chunks,
            embeddings_are_complete_unit_vectors,
            no_orphan_chunks,
            chunk_ids_are_unique,
            chunks_fit_the_model,
        ],
        partition_key=author,
        instance=instance,
        resources={
            "postgres": PostgresResource(),
            "warehouse": WarehouseResource(database="features_test"),
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
    db: Database, postgres_url: str, conn: psycopg.Connection, embedder: Embedder, author: str
) -> None:
    from twin_platform import sql_models

    insert(db, corpus(author))
    report = pipeline.sync_author(db, postgres_url, author, embedder)
    models = sql_models.load_models()
    names = [m.name for m in models]
    assert names.index("author_corpus_stats") < names.index("embedding_coverage")
    for model in models:
        assert sql_models.run_model(conn, model) > 0
    stats = conn.execute(
        "SELECT category, documents, chunks, embedded_chunks, non_english FROM analytics.author_corpus_stats"
        " WHERE author = %s ORDER BY category",
        (author,),
    ).fetchall()
    assert [(c, d) for c, d, *_ in stats] == [("articles", 2), ("posts", 3), ("repositories", 1)]
    assert sum(row[2] for row in stats) == sum(row[3] for row in stats) == report.chunking.chunks
    assert sum(row[4] for row in stats) == 1  # the French post
    coverage = conn.execute(
        "SELECT coverage_pct, models FROM analytics.embedding_coverage WHERE author = %s", (author,)
    ).fetchone()
    assert coverage is not None and float(coverage[0]) == 100.0 and coverage[1] == embedder.name
    preview = sql_models.preview(conn, models[names.index("author_corpus_stats")], limit=3)
    assert preview.height <= 3 and {"author", "category"} <= set(preview.columns)


def test_sample_corpus_end_to_end(
    sample_author: str,
    mongodb_url: str,
    postgres_url: str,
    conn: psycopg.Connection,
    embedder: Embedder,
) -> None:
    from twin_platform.settings import load_settings

    sample_db = warehouse.connect(mongodb_url, load_settings().mongodb_database)
    pipeline.sync_author(sample_db, postgres_url, sample_author, embedder)
    counts = store.category_counts(conn, sample_author)
    assert set(counts["category"]) == {"articles", "posts", "repositories"}
    assert (counts["chunks"] > 0).all() and counts["chunks"].to_list() == counts[
        "embedded"
    ].to_list()
    quality = store.quality(conn, sample_author, 384, 256)
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
    hits = store.lexical_search(conn, "measure then argue", k=3, author=sample_author)
    assert hits and all(h.author == sample_author for h in hits)
    query = embedder.encode(["How do I keep a Postgres vector index fast?"])[0]
    assert store.vector_search(conn, query, k=3, author=sample_author)
