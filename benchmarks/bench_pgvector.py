"""pgvector HNSW sweep: p50/p95 latency and recall@10 against an exact scan, at 100,000 vectors.

Synthetic 384-d unit vectors with a low intrinsic dimension and topical clusters, like sentence
embeddings (uniform random vectors, a harsher case, with --distribution uniform). Queries
are fresh draws from the same distribution, not rows of the table. The ground truth is the exact
top-10 by cosine (numpy, checked against Postgres' own sequential scan). Each (m, ef_construction)
builds one index; each ef_search runs every query through it.

    .venv/bin/python benchmarks/bench_pgvector.py --rows 100000 --output benchmarks/results/pgvector.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic(rows: int, dim: int, distribution: str, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors. `lowrank`: clusters in a 64-d latent space mapped into `dim` plus noise, like
    sentence embeddings (low intrinsic dimension, topical clusters); `uniform`: isotropic, the worst case."""
    if distribution == "uniform":
        vectors = rng.normal(size=(rows, dim)).astype(np.float32)
    else:
        basis = np.random.default_rng(0).normal(size=(64, dim)).astype(np.float32)
        centres = np.random.default_rng(1).normal(size=(500, 64)).astype(np.float32)
        latent = centres[rng.integers(0, len(centres), rows)] + rng.normal(size=(rows, 64)).astype(
            np.float32
        )
        vectors = latent @ basis + 2.0 * rng.normal(size=(rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--builds", default="8:32,16:64,16:128,24:128", help="m:ef_construction pairs"
    )
    parser.add_argument("--ef-search", default="20,40,80,120,200")
    parser.add_argument("--distribution", choices=["lowrank", "uniform"], default="lowrank")
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help="TWIN_HOME for the embedded Postgres (default: a temp dir)",
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="Also write the Markdown report here"
    )
    args = parser.parse_args()

    home = args.home or Path(tempfile.mkdtemp(prefix="bench-pgvector-"))
    os.environ.setdefault("TWIN_HOME", str(home))
    from twin_platform import servers
    from twin_platform.settings import load_settings
    from twin_platform.storage.postgres import connect

    url = servers.postgres_uri(load_settings())
    rng = np.random.default_rng(42)
    data = synthetic(args.rows, args.dim, args.distribution, rng)
    queries = synthetic(args.queries, args.dim, args.distribution, np.random.default_rng(7))
    truth = np.argsort(-(queries @ data.T), axis=1)[:, : args.k]
    lines = [
        f"### pgvector HNSW sweep ({args.rows:,} x {args.dim}-d, {args.distribution}, {args.queries} queries, k={args.k})",
        "",
        f"Command: `python benchmarks/bench_pgvector.py {' '.join(sys.argv[1:])}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared), Python {platform.python_version()}",
        "",
    ]
    with connect(url, autocommit=True) as conn:
        version = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()
        lines.insert(
            3,
            f"pgvector {version[0] if version else '?'}, embedded PostgreSQL, latency = client round trip over a unix socket  ",
        )
        conn.execute("DROP TABLE IF EXISTS bench_vectors")
        conn.execute(
            f"CREATE TABLE bench_vectors (id int PRIMARY KEY, embedding vector({args.dim}))"
        )
        started = time.perf_counter()
        with conn.cursor().copy(
            "COPY bench_vectors (id, embedding) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int4", "vector"])
            for i, vector in enumerate(data):
                copy.write_row((i, vector))
        load_s = time.perf_counter() - started
        conn.execute("VACUUM ANALYZE bench_vectors")
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET max_parallel_maintenance_workers = 1")
        statement = "SELECT id FROM bench_vectors ORDER BY embedding <=> %s LIMIT %s"

        def run(ef_search: int | None) -> tuple[list[float], float]:
            latencies, hits = [], 0
            for query, expected in zip(queries, truth, strict=True):
                t = time.perf_counter()
                ids = [r[0] for r in conn.execute(statement, (query, args.k))]
                latencies.append((time.perf_counter() - t) * 1000)
                hits += len(set(ids) & set(expected.tolist()))
            return latencies, hits / (len(queries) * args.k)

        conn.execute("SET enable_indexscan = off")
        exact_latency, exact_recall = run(None)
        conn.execute("RESET enable_indexscan")
        lines += [
            f"COPY of {args.rows:,} vectors: {load_s:.1f} s. Exact scan (no index): p50 "
            f"{statistics.median(exact_latency):.1f} ms, recall vs numpy {exact_recall:.3f}.",
            "",
            "| m | ef_construction | build s | index MB | ef_search | p50 ms | p95 ms | recall@10 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        print("\n".join(lines), flush=True)
        for pair in args.builds.split(","):
            m, ef_construction = (int(x) for x in pair.split(":"))
            conn.execute("DROP INDEX IF EXISTS bench_hnsw")
            started = time.perf_counter()
            conn.execute(
                f"CREATE INDEX bench_hnsw ON bench_vectors USING hnsw (embedding vector_cosine_ops)"
                f" WITH (m = {m}, ef_construction = {ef_construction})"
            )
            build_s = time.perf_counter() - started
            size = conn.execute("SELECT pg_relation_size('bench_hnsw')").fetchone()
            size_mb = (size[0] if size else 0) / 2**20
            for ef_search in (int(x) for x in args.ef_search.split(",")):
                conn.execute(f"SET hnsw.ef_search = {ef_search}")
                run(ef_search)  # warm the cache
                latencies, recall = run(ef_search)
                p95 = statistics.quantiles(latencies, n=20)[-1]
                row = (
                    f"| {m} | {ef_construction} | {build_s:.0f} | {size_mb:.0f} | {ef_search} | "
                    f"{statistics.median(latencies):.2f} | {p95:.2f} | {recall:.3f} |"
                )
                lines.append(row)
                print(row, flush=True)
        conn.execute("DROP TABLE bench_vectors")
    if args.home is None:
        servers.down(load_settings())  # the temporary server is not needed any more
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
