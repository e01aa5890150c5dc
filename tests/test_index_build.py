"""The HNSW index of embedded_chunks: sized builds, CONCURRENTLY with progress, bulk loads, streaming.

Against the real embedded Postgres. Tests that change the shared index put the default back.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import numpy as np
import psycopg
import pytest
from conftest import add_chunks

from twin_platform.features import pipeline
from twin_platform.features.embedding import TextEmbedder
from twin_platform.features.encoders import load_pipeline_embedder
from twin_platform.servers.postgres import index_build_budget
from twin_platform.settings import load_settings
from twin_platform.storage.feature_store import hnsw, search, writes
from twin_platform.storage.postgres import connect

GB = 2**30
DEFAULT = hnsw.HnswSpec()


@pytest.fixture
def conn(postgres_url: str) -> Iterator[psycopg.Connection]:
    with connect(postgres_url) as connection:
        yield connection
        hnsw.ensure_index(connection, DEFAULT, hnsw.BuildBudget())  # as the other tests expect


@pytest.fixture(scope="module")
def onnx_embedder() -> TextEmbedder:
    settings = load_settings()
    return load_pipeline_embedder(settings.embedding_model, settings.onnx_cache_dir, "cpu", "onnx")


def unit_vectors(rows: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(rows, 384)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_graph_memory_budget_and_bulk_threshold() -> None:
    # 1M x 384 at m 16 is the "about 2 GB" graph; halfvec halves the vectors' share.
    assert 2.0 * GB < hnsw.graph_bytes(1_000_000, 384, 16) < 2.5 * GB
    assert hnsw.graph_bytes(1_000_000, 384, 16, "halfvec") < 0.7 * hnsw.graph_bytes(
        1_000_000, 384, 16
    )
    graph, default = 2 * GB, 64 * 2**20
    # Memory for the whole graph, within the budget; never below the server's own setting.
    memory, workers = hnsw.build_memory(graph, default, hnsw.BuildBudget(8 * GB, None, 3))
    assert graph < memory < 2.5 * GB and workers == 3
    assert hnsw.build_memory(graph, default, hnsw.BuildBudget(1 * GB, None, 3)) == (1 * GB, 3)
    assert hnsw.build_memory(1000, 4 * GB, hnsw.BuildBudget(1 * GB, None, 1))[0] == 4 * GB
    # No budget (a server elsewhere): its own settings.
    assert hnsw.build_memory(graph, default, hnsw.BuildBudget()) == (default, None)
    # The graph fits memory but not /dev/shm: one process in memory rather than a parallel spill.
    assert hnsw.build_memory(graph, default, hnsw.BuildBudget(8 * GB, 1 * GB, 3))[1] == 0
    # Bulk loads into a small store defer the index; anything else inserts into it.
    assert hnsw.defer_for_load(1_000_000, 0, 50_000)
    assert hnsw.defer_for_load(50_000, 49_999, 50_000)
    assert not hnsw.defer_for_load(49_999, 0, 50_000)
    assert not hnsw.defer_for_load(1_000_000, 50_000, 50_000)
    budget = index_build_budget("4GB", None, embedded=False)
    assert (budget.memory_bytes, budget.workers) == (4 * GB, None)
    assert index_build_budget().workers is not None  # embedded: a worker per core beside the leader


def test_rebuild_runs_concurrently_with_progress_and_searches_keep_working(
    conn: psycopg.Connection, postgres_url: str
) -> None:
    author = f"idx-{uuid.uuid4().hex[:8]}"
    chunks = add_chunks(conn, author, [f"chunk {i}" for i in range(3000)])
    vectors = unit_vectors(len(chunks), seed=1)
    writes.insert_embeddings(conn, chunks, vectors, "synthetic")
    hnsw.ensure_index(conn, DEFAULT, hnsw.BuildBudget())
    query = vectors[11]

    searched: list[int] = []
    stop = threading.Event()

    def keep_searching() -> None:
        with connect(postgres_url) as reader:
            while not stop.is_set():
                searched.append(len(search.vector_search(reader, query, k=5, author=author)))

    readings: list[hnsw.BuildProgress] = []
    spec = hnsw.HnswSpec(m=8, ef_construction=40, storage="halfvec")
    server_default = conn.execute("SHOW maintenance_work_mem").fetchone()
    searcher = threading.Thread(target=keep_searching)
    searcher.start()
    try:
        report = hnsw.ensure_index(
            conn, spec, hnsw.BuildBudget(512 * 2**20, None, 1), readings.append, poll_s=0.02
        )
    finally:
        stop.set()
        searcher.join()
    assert report.built and report.reason == "definition changed"
    assert report.rows >= len(chunks) and report.memory_bytes > report.graph_bytes > 0
    assert report.workers == 1 and report.index_bytes > 0
    assert readings and all(r.tuples_expected == report.rows for r in readings)
    assert searched and set(searched) == {5}  # every search answered while the index was rebuilt
    assert conn.execute("SHOW maintenance_work_mem").fetchone() == server_default  # reset after
    assert hnsw.indexed_storage(conn) == "halfvec"
    assert not hnsw.ensure_index(conn, spec, hnsw.BuildBudget()).built  # up to date: nothing

    search.configure_search(conn, 40)  # a pooled connection reads the index's storage again
    hits = search.vector_search(conn, query, k=5, author=author)
    assert hits[0].chunk_id == chunks[11].chunk_id and abs(hits[0].score - 1) < 1e-3
    plan = "\n".join(
        str(row[0])
        for row in conn.execute(
            "EXPLAIN SELECT chunk_id FROM embedded_chunks"
            " ORDER BY embedding::halfvec(384) <=> %s::halfvec LIMIT 5",
            (query,),
        )
    )
    assert hnsw.INDEX in plan
    writes.delete_documents(conn, [chunks[0].document_id])


def test_a_bulk_load_streams_pages_and_builds_the_index_once(
    conn: psycopg.Connection, onnx_embedder: TextEmbedder
) -> None:
    author = f"bulk-{uuid.uuid4().hex[:8]}"
    stored = writes.stored_embeddings(conn, at_most=10**9)
    threshold = stored + 1
    texts = [f"note {i}: {'short ' * (i % 5)}words" for i in range(threshold + 9)]
    add_chunks(conn, author, texts)
    with conn.transaction():  # can a page be read from the index? (small tables scan anyway)
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(
            str(row[0])
            for row in conn.execute(
                "EXPLAIN SELECT chunk_id FROM chunks WHERE author = %s"
                " AND (token_count, chunk_id) > (%s, %s) ORDER BY token_count, chunk_id LIMIT 7",
                (author, *writes.FIRST_KEY),
            )
        )
    assert "chunks_author_length" in plan and "ROW(token_count, chunk_id) >" in plan

    policy = hnsw.IndexPolicy(spec=DEFAULT, bulk_load_rows=threshold)
    report = pipeline.sync_embeddings(conn, author, onnx_embedder, batch_size=7, index=policy)
    assert report.index_deferred and report.embedded == len(texts)
    assert report.index is not None and report.index.built and report.index.reason == "missing"
    assert report.backend == "onnx"
    assert writes.count_missing_embeddings(conn, author) == 0

    # An incremental load inserts into the index it finds: nothing dropped, nothing rebuilt.
    more = f"{author}-more"
    add_chunks(conn, more, ["one more note", "and another"])
    again = pipeline.sync_embeddings(conn, more, onnx_embedder, index=policy)
    assert again.embedded == 2 and not again.index_deferred
    assert again.index is not None and not again.index.built


def test_only_large_authors_sharing_a_store_get_an_index_of_their_own() -> None:
    assert hnsw.wants_author_index(rows=100_000, store_rows=1_000_000, min_rows=100_000)
    assert not hnsw.wants_author_index(rows=99_999, store_rows=1_000_000, min_rows=100_000)
    # One author holding most of the store: the shared index already serves them.
    assert not hnsw.wants_author_index(rows=600_000, store_rows=1_000_000, min_rows=100_000)
    assert not hnsw.wants_author_index(rows=10**6, store_rows=10**7, min_rows=0)  # turned off
    assert hnsw.author_index("Ada") != hnsw.author_index("ada")
    assert len(hnsw.author_index("x" * 500)) <= 63  # a Postgres identifier


def index_scans(conn: psycopg.Connection, index: str, at_least: int = 0) -> int:
    """The index's scan count; waits up to 10 s for `at_least` (backends flush statistics lazily)."""
    deadline = time.monotonic() + 10
    while True:
        conn.execute("SELECT pg_stat_force_next_flush()")  # this connection's searches
        row = conn.execute(
            "SELECT coalesce(sum(idx_scan), 0) FROM pg_stat_user_indexes WHERE indexrelname = %s",
            (index,),
        ).fetchone()
        scans = int(row[0]) if row else 0
        if scans >= at_least or time.monotonic() > deadline:
            return scans
        time.sleep(0.2)


def test_large_authors_get_partial_indexes_that_prepared_searches_use(
    conn: psycopg.Connection, postgres_url: str
) -> None:
    run = uuid.uuid4().hex[:8]
    big, other, small = f"big-{run}", f"other-{run}", f"small-{run}"
    added = {
        author: add_chunks(conn, author, [f"{author} {i}" for i in range(rows)])
        for author, rows in [(big, 400), (other, 400), (small, 40)]
    }
    for seed, chunks in enumerate(added.values()):
        writes.insert_embeddings(conn, chunks, unit_vectors(len(chunks), seed), "synthetic")
    conn.execute("ANALYZE embedded_chunks")  # autovacuum's job, too slow for a test
    readings: list[hnsw.BuildProgress] = []
    try:
        reports = hnsw.ensure_author_indexes(
            conn, DEFAULT, hnsw.BuildBudget(), min_rows=300, progress=readings.append, poll_s=0.01
        )
        built = {r.author: r for r in reports if r.built}
        assert {big, other} <= set(built) and small not in built
        assert built[big].index == hnsw.author_index(big) and built[big].rows == 400
        assert {r.index for r in readings} <= {r.index for r in reports}
        again = hnsw.ensure_author_indexes(conn, DEFAULT, hnsw.BuildBudget(), min_rows=300)
        assert not any(r.built for r in again)  # up to date: nothing built

        # The API's searches are prepared statements (psycopg prepares a repeated one): each must
        # still be planned for its author, or the partial index is never used.
        index = hnsw.author_index(big)
        query = unit_vectors(1, seed=99)[0]
        with connect(postgres_url) as reader:
            search.configure_search(reader, 40)
            # A few hundred rows sort faster than any index walks: leave the planner the two HNSW
            # indexes, the shared one (filtered) and the author's.
            for method in ("seqscan", "bitmapscan", "sort"):
                reader.execute(f"SET enable_{method} = off")
            before = index_scans(reader, index)
            for _ in range(
                15
            ):  # psycopg prepares the 6th; Postgres plans generically from the 6th after
                hits = search.vector_search(reader, query, k=10, author=big, ef_search=None)
                assert len(hits) == 10 and {h.author for h in hits} == {big}
            assert index_scans(reader, index, at_least=before + 15) - before == 15
            # What the searches' setting guards against: a generic plan cannot use the index.
            reader.execute("SET plan_cache_mode = force_generic_plan")
            search.vector_search(reader, query, k=10, author=big, ef_search=None)
            time.sleep(1.1)  # past the backend's minimum interval between statistics flushes
            assert index_scans(reader, index) == before + 15
        exact = conn.execute(
            "SELECT chunk_id FROM embedded_chunks WHERE author = %s ORDER BY embedding <=> %s"
            " LIMIT 10",
            (big, query),
        ).fetchall()
        assert {h.chunk_id for h in hits} == {chunk_id for (chunk_id,) in exact}
    finally:
        dropped = hnsw.ensure_author_indexes(conn, DEFAULT, hnsw.BuildBudget(), min_rows=0)
        for chunks in added.values():
            writes.delete_documents(conn, [chunks[0].document_id])
    assert {hnsw.author_index(big), hnsw.author_index(other)} <= {r.index for r in dropped}
    assert all(r.reason == "no longer wanted" for r in dropped)
    left = conn.execute(
        "SELECT count(*) FROM pg_indexes WHERE indexname LIKE %s", (hnsw.AUTHOR_INDEX_PREFIX + "%",)
    ).fetchone()
    assert left == (0,)
