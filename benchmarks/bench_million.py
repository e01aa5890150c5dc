"""The feature store at a million chunks: HNSW builds sized to the data, and search with and
without an author filter (one author of ten) against the exact top-k. Built once, re-measured in
minutes.

1. Corpus, once per `--home`: bench_api.py's synthetic corpus (`--rows` chunks of ~80 words, 10
   authors, 3 categories, clustered 384-d unit vectors), written as the pipeline writes a first
   bulk load. Queries (fresh draws from the same distribution; query i filters on author i mod 10)
   and their exact top-k, unfiltered and filtered (numpy over the stored vectors), are cached in
   `--home/truth-<rows>-<queries>.npz`. `bench_api.py --rows N --home SAME` reuses the corpus.
2. Builds: for each `--builds` spec (storage:m:ef_construction), the pipeline's own index build
   (`hnsw.ensure_index`: CONCURRENTLY, maintenance_work_mem from the graph's size and the free
   memory, a parallel worker per core beside the leader, progress printed). An index that already
   has the spec is kept (its build time is read from `--home/builds.json`), so a re-run only
   measures. Put the spec you want to keep last: later runs (and bench_api.py) find it. Note that
   bench_api.py rebuilds to the TWIN_HNSW_* settings if they differ.
3. Searches, per build and `--ef-search`: through `search.vector_search` on a connection set up as
   the API's pool sets it (`configure_search`): unfiltered, filtered with pgvector's iterative scan
   (relaxed order, the production setting) and filtered with the iterative scan off (what a filter
   does without it). p50/p95 of the client round trip over the unix socket, recall@k.
4. `--strategies partial,partitioned` (opt-in; each builds ten more indexes): per-author partial
   HNSW indexes on embedded_chunks (dropped afterwards), and a LIST-partitioned copy with one HNSW
   index per author (kept in `--home`); filtered search on each.

    .venv/bin/python benchmarks/bench_million.py --home /var/tmp/twin-bench-1m \\
        --builds vector:16:128,halfvec:16:64 --output /tmp/million.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_api  # noqa: E402
import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from twin_platform.storage.feature_store import hnsw, search  # noqa: E402

AUTHORS = bench_api.AUTHORS


def parse_spec(text: str) -> hnsw.HnswSpec:
    storage, m, ef_construction = text.split(":")
    return hnsw.HnswSpec(int(m), int(ef_construction), storage)  # type: ignore[arg-type]


def spec_name(spec: hnsw.HnswSpec) -> str:
    return f"{spec.storage}:{spec.m}:{spec.ef_construction}"


def stored_vectors(conn: psycopg.Connection) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(chunk ids, author index per row, vectors) of embedded_chunks, by binary COPY."""
    ids, authors, vectors = [], [], []
    author_index = {a: i for i, a in enumerate(AUTHORS)}
    with conn.cursor().copy(
        "COPY (SELECT chunk_id, author, embedding FROM embedded_chunks) TO STDOUT (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["text", "text", "vector"])
        for chunk_id, author, vector in copy.rows():
            ids.append(chunk_id)
            authors.append(author_index[author])
            vectors.append(np.asarray(vector.to_numpy(), dtype=np.float32))
    return ids, np.array(authors), np.stack(vectors)


def exact_top_k(
    vectors: np.ndarray, row_authors: np.ndarray, queries: np.ndarray, k: int, filtered: bool
) -> np.ndarray:
    """Row indices of each query's exact top-k by cosine; filtered: among its author's rows."""
    query_authors = np.arange(len(queries)) % len(AUTHORS)
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, len(vectors), 50_000):
        scores = queries @ vectors[start : start + 50_000].T
        if filtered:
            same = row_authors[start : start + 50_000][None, :] == query_authors[:, None]
            scores = np.where(same, scores, -np.inf)
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        scores_all = np.concatenate([best_scores, np.take_along_axis(scores, top, 1)], axis=1)
        rows_all = np.concatenate([best_rows, top + start], axis=1)
        keep = np.argsort(-scores_all, axis=1)[:, :k]
        best_scores = np.take_along_axis(scores_all, keep, 1)
        best_rows = np.take_along_axis(rows_all, keep, 1)
    return best_rows


def ground_truth(
    conn: psycopg.Connection, home: Path, rows: int, n_queries: int, k: int
) -> dict[str, Any]:
    """Queries and their exact top-k chunk ids (unfiltered, filtered), cached in `home`."""
    path = home / f"truth-{rows}-{n_queries}-{k}.npz"
    if path.exists():
        cached = np.load(path, allow_pickle=False)
        return {name: cached[name] for name in cached.files}
    started = time.perf_counter()
    ids, row_authors, vectors = stored_vectors(conn)
    queries = bench_api.clustered_vectors(n_queries, vectors.shape[1], np.random.default_rng(99))
    chunk_ids = np.array(ids)
    truth = {
        "queries": queries,
        "unfiltered": chunk_ids[exact_top_k(vectors, row_authors, queries, k, False)],
        "filtered": chunk_ids[exact_top_k(vectors, row_authors, queries, k, True)],
    }
    np.savez(path, **truth)
    print(f"ground truth: {time.perf_counter() - started:.0f} s", flush=True)
    return truth


def run_queries(
    conn: psycopg.Connection, truth: dict[str, Any], k: int, filtered: bool, iterative: str
) -> tuple[float, float, float]:
    """(p50 ms, p95 ms, recall@k) of every query through `search.vector_search`, after a warm-up
    pass, with the connection's own HNSW settings (as the API's pool sets them)."""
    conn.execute("SELECT set_config('hnsw.iterative_scan', %s, false)", (iterative,))
    expected = truth["filtered" if filtered else "unfiltered"]
    latencies, hits = [], 0
    for measured in (False, True):
        for i, query in enumerate(truth["queries"]):
            author = AUTHORS[i % len(AUTHORS)] if filtered else None
            started = time.perf_counter()
            found = search.vector_search(conn, query, k=k, author=author, ef_search=None)
            if measured:
                latencies.append((time.perf_counter() - started) * 1000)
                hits += len({hit.chunk_id for hit in found} & set(expected[i].tolist()))
    return _summary(latencies, hits, len(truth["queries"]) * k)


def _summary(latencies: list[float], hits: int, total: int) -> tuple[float, float, float]:
    p95 = statistics.quantiles(latencies, n=20)[-1] if len(latencies) > 1 else latencies[0]
    return statistics.median(latencies), p95, hits / total


def exact_scan(conn: psycopg.Connection, truth: dict[str, Any], k: int, n: int) -> float:
    """p50 ms of an exact scan (index scans off) over the whole table, `n` queries."""
    latencies = []
    with conn.transaction():
        conn.execute("SET LOCAL enable_indexscan = off")
        for query in truth["queries"][:n]:
            started = time.perf_counter()
            conn.execute(
                "SELECT chunk_id FROM embedded_chunks ORDER BY embedding <=> %s LIMIT %s",
                (query, k),
            ).fetchall()
            latencies.append((time.perf_counter() - started) * 1000)
    return statistics.median(latencies)


def build(
    conn: psycopg.Connection, spec: hnsw.HnswSpec, budget: hnsw.BuildBudget, home: Path
) -> dict[str, Any]:
    """The production build of `spec` (or the index already there); its figures, kept in home."""
    log = home / "builds.json"
    builds = json.loads(log.read_text()) if log.exists() else {}
    report = hnsw.ensure_index(conn, spec, budget, bench_api.print_progress)
    if report.built:
        builds[spec_name(spec)] = {
            "seconds": f"{report.seconds:.0f}",
            "graph_mb": f"{report.graph_bytes / 2**20:.0f}",
            "memory_mb": f"{report.memory_bytes / 2**20:.0f}",
            "workers": report.workers,
            "index_mb": f"{report.index_bytes / 2**20:.0f}",
        }
        log.write_text(json.dumps(builds, indent=2))
    unknown = dict.fromkeys(["seconds", "graph_mb", "memory_mb", "workers", "index_mb"], "?")
    return builds.get(spec_name(spec), unknown) | {"reused": not report.built}


def per_author_indexes(
    conn: psycopg.Connection, spec: hnsw.HnswSpec, budget: hnsw.BuildBudget, partitioned: bool
) -> float:
    """Ten HNSW indexes, one per author: partial indexes on embedded_chunks, or one per partition
    of a LIST-partitioned copy (made once). Returns the seconds their builds took."""
    rows = table_rows(conn) // len(AUTHORS)
    dims = 384
    memory, workers = hnsw.build_memory(
        hnsw.graph_bytes(rows, dims, spec.m, spec.storage),
        int(
            conn.execute(
                "SELECT pg_size_bytes(current_setting('maintenance_work_mem'))"
            ).fetchone()[0]
        ),  # type: ignore[index]
        budget,
    )
    conn.execute("SELECT set_config('maintenance_work_mem', %s, false)", (f"{memory // 1024}kB",))
    if workers is not None:
        conn.execute(
            "SELECT set_config('max_parallel_maintenance_workers', %s, false)", (str(workers),)
        )
    if partitioned and conn.execute("SELECT to_regclass('bench_parted')").fetchone() == (None,):
        conn.execute(
            "CREATE TABLE bench_parted (chunk_id text, document_id text, author text,"
            f" category text, source_url text, content text, embedding vector({dims}))"
            " PARTITION BY LIST (author)"
        )
        for i, author in enumerate(AUTHORS):
            conn.execute(
                sql.SQL("CREATE TABLE {} PARTITION OF bench_parted FOR VALUES IN ({})").format(
                    sql.Identifier(f"bench_parted_{i}"), sql.Literal(author)
                )
            )
        conn.execute(
            "INSERT INTO bench_parted SELECT chunk_id, document_id, author, category,"
            " source_url, content, embedding FROM embedded_chunks"
        )
        conn.execute("VACUUM ANALYZE bench_parted")
    started = time.perf_counter()
    key = sql.SQL(spec.key_sql(dims))
    opclass = sql.SQL(f"{spec.storage}_cosine_ops")
    for i, author in enumerate(AUTHORS):
        name = sql.Identifier(f"bench_{'parted' if partitioned else 'partial'}_hnsw_{i}")
        conn.execute(
            sql.SQL(
                "CREATE INDEX IF NOT EXISTS {name} ON {table} USING hnsw ({key} {opclass})"
                " WITH (m = {m}, ef_construction = {ef}) {where}"
            ).format(
                name=name,
                table=sql.Identifier(f"bench_parted_{i}" if partitioned else "embedded_chunks"),
                key=key,
                opclass=opclass,
                m=sql.Literal(spec.m),
                ef=sql.Literal(spec.ef_construction),
                where=sql.SQL("")
                if partitioned
                else sql.SQL("WHERE author = {}").format(sql.Literal(author)),
            )
        )
    conn.execute("RESET maintenance_work_mem")
    conn.execute("RESET max_parallel_maintenance_workers")
    return time.perf_counter() - started


def index_used(conn: psycopg.Connection, truth: dict[str, Any], spec: hnsw.HnswSpec) -> str:
    """The indexes the planner picks for a filtered search (is it the author's partial index?)."""
    order = spec.key_sql(384) + (" <=> %s::halfvec" if spec.storage == "halfvec" else " <=> %s")
    plan = conn.execute(
        f"EXPLAIN SELECT chunk_id FROM embedded_chunks WHERE author = %s ORDER BY {order} LIMIT 10",
        (AUTHORS[0], truth["queries"][0]),
    ).fetchall()
    return ", ".join(
        str(r[0]).split(" using ")[1].split()[0] for r in plan if " using " in str(r[0])
    )


def table_rows(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM embedded_chunks").fetchone()
    return int(row[0]) if row else 0


def partitioned_queries(
    conn: psycopg.Connection, truth: dict[str, Any], k: int, spec: hnsw.HnswSpec
) -> tuple[float, float, float]:
    """Filtered search on the partitioned copy: the author's partition and its own index."""
    order = spec.key_sql(384) + (" <=> %s::halfvec" if spec.storage == "halfvec" else " <=> %s")
    statement = (
        "SELECT chunk_id, 1 - (embedding <=> %s) FROM bench_parted WHERE author = %s"
        f" ORDER BY {order} LIMIT %s"
    )
    latencies, hits = [], 0
    for measured in (False, True):
        for i, query in enumerate(truth["queries"]):
            started = time.perf_counter()
            rows = conn.execute(statement, (query, AUTHORS[i % len(AUTHORS)], query, k)).fetchall()
            if measured:
                latencies.append((time.perf_counter() - started) * 1000)
                hits += len({r[0] for r in rows} & set(truth["filtered"][i].tolist()))
    return _summary(latencies, hits, len(truth["queries"]) * k)


def server_facts(conn: psycopg.Connection) -> str:
    row = conn.execute(
        "SELECT (SELECT extversion FROM pg_extension WHERE extname = 'vector'),"
        " current_setting('server_version'), current_setting('shared_buffers'),"
        " current_setting('maintenance_work_mem'), current_setting('max_parallel_maintenance_workers')"
    ).fetchone()
    assert row is not None
    return (
        f"pgvector {row[0]}, PostgreSQL {row[1]} (embedded), shared_buffers {row[2]}; server"
        f" defaults maintenance_work_mem {row[3]}, max_parallel_maintenance_workers {row[4]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, required=True, help="TWIN_HOME; the corpus is kept")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--builds", default="vector:16:128", help="storage:m:ef_construction specs, in order"
    )
    parser.add_argument("--ef-search", default="40,80,120,200")
    parser.add_argument("--exact-queries", type=int, default=20)
    parser.add_argument("--strategies", default="", help="partial,partitioned (opt-in)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    args.home.mkdir(parents=True, exist_ok=True)
    os.environ["TWIN_HOME"] = str(args.home.resolve())
    os.environ.pop("DATABASE_URL", None)
    from twin_platform import servers
    from twin_platform.servers.postgres import index_build_budget
    from twin_platform.settings import load_settings
    from twin_platform.storage.postgres import connect

    url = servers.postgres_uri(load_settings())
    specs = [parse_spec(text) for text in args.builds.split(",")]
    corpus_s = bench_api.write_corpus(url, args.rows, args.home / "bench-corpus.txt")
    budget = index_build_budget()
    lines = [
        f"### Feature store at {args.rows:,} chunks ({args.queries} queries, k={args.k})",
        "",
        f"Command: `python benchmarks/bench_million.py {' '.join(sys.argv[1:])}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()};"
        f" build budget: maintenance_work_mem up to {(budget.memory_bytes or 0) / 2**30:.1f} GiB,"
        f" {budget.workers} parallel workers beside the leader  ",
    ]
    with connect(url) as conn:
        conn.prepare_threshold = None  # custom plans every time (partial indexes need them)
        lines.append(server_facts(conn) + "  ")
        truth = ground_truth(conn, args.home, args.rows, args.queries, args.k)
        exact = exact_scan(conn, truth, args.k, args.exact_queries)
        lines += [
            f"Corpus: {'reused' if corpus_s == 0 else f'built in {corpus_s:.0f} s'}. Exact scan"
            f" (no index, whole table): p50 {exact:.0f} ms.",
            "",
            "| index | build s | graph MB | maintenance_work_mem MB | workers | index MB | ef_search"
            " | p50 ms | p95 ms | recall@k | filtered iterative p50 ms | p95 ms | recall@k"
            " | filtered, iterative off: p50 ms | recall@k |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        print("\n".join(lines), flush=True)
        for spec in specs:
            b = build(conn, spec, budget, args.home)
            for ef in (int(x) for x in args.ef_search.split(",")):
                search.configure_search(conn, ef)  # as the API's pool: relaxed iterative scans
                plain = run_queries(conn, truth, args.k, False, "relaxed_order")
                relaxed = run_queries(conn, truth, args.k, True, "relaxed_order")
                off = run_queries(conn, truth, args.k, True, "off")
                row = (
                    f"| {spec_name(spec)}{' (reused)' if b['reused'] else ''} | {b['seconds']} |"
                    f" {b['graph_mb']} | {b['memory_mb']} | {b['workers']} |"
                    f" {b['index_mb']} | {ef} | {plain[0]:.2f} | {plain[1]:.2f} |"
                    f" {plain[2]:.3f} | {relaxed[0]:.2f} | {relaxed[1]:.2f} | {relaxed[2]:.3f} |"
                    f" {off[0]:.2f} | {off[2]:.3f} |"
                )
                lines.append(row)
                print(row, flush=True)
        strategies = [s for s in args.strategies.split(",") if s]
        if strategies:
            lines += [
                "",
                "| per-author strategy | builds s | ef_search | filtered p50 ms | p95 ms | recall@k |",
                "|---|---|---|---|---|---|",
            ]
        for strategy in strategies:
            partitioned = strategy == "partitioned"
            seconds = per_author_indexes(conn, spec, budget, partitioned)
            for ef in (int(x) for x in args.ef_search.split(",")):
                search.configure_search(conn, ef)
                if partitioned:
                    result = partitioned_queries(conn, truth, args.k, spec)
                else:
                    result = run_queries(conn, truth, args.k, True, "relaxed_order")
                    print(f"  partial plan: {index_used(conn, truth, spec)}", flush=True)
                row = (
                    f"| {strategy} ({spec_name(spec)}) | {seconds:.0f} | {ef} | {result[0]:.2f}"
                    f" | {result[1]:.2f} | {result[2]:.3f} |"
                )
                lines.append(row)
                print(row, flush=True)
            if not partitioned:
                for i in range(len(AUTHORS)):
                    conn.execute(
                        sql.SQL("DROP INDEX IF EXISTS {}").format(
                            sql.Identifier(f"bench_partial_hnsw_{i}")
                        )
                    )
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
