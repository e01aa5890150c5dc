"""Load test of the API's retrieval path (`POST /retrieve`) at 100,000 or 1,000,000 chunks, from a
separate process.

1. Builds a synthetic corpus in its own TWIN_HOME (`--home`; built once, then reused): `--rows`
   chunks of ~80 words by 10 authors in 3 categories, written as the pipeline writes a first bulk
   load (rows first, then one HNSW build with the TWIN_HNSW_* definition). Words follow a Zipf law
   over 20,000 English words (the embedding model's vocabulary, in its frequency order) mixed with
   stopwords (which full-text search drops), so the full-text arm sees realistic posting lists.
   Vectors are clustered unit vectors (like sentence embeddings; embedding the texts on 2 cores
   would take hours and changes nothing on the query path). Queries are embedded by the real model
   in the server, like any request. `benchmarks/bench_million.py` uses the same corpus.
2. Starts `twin serve` as its own process for each configuration, and drives it from this process
   with N concurrent connections (aiohttp, asyncio): warm-up, then the measured requests.
3. Prints (and with --output writes) one Markdown table, configurations side by side, with the
   CPU each process spent per request.

    .venv/bin/python benchmarks/bench_api.py --requests 5000 --concurrency 16 --output /tmp/api.md
    .venv/bin/python benchmarks/bench_api.py --rows 1000000 --home /var/tmp/twin-bench-1m \
        --configs default --requests 5000 --concurrency 16 --output /tmp/api_1m.md
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twin_platform.storage.feature_store.records import Chunk, CleanedDocument  # noqa: E402

STOPWORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "a",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "i",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "they",
    "you",
    "were",
    "her",
    "she",
    "there",
    "been",
    "one",
    "all",
    "we",
    "their",
    "has",
    "would",
    "when",
    "if",
    "so",
    "no",
    "what",
    "up",
    "its",
    "out",
    "who",
    "them",
    "about",
    "into",
    "than",
    "can",
    "more",
    "these",
    "some",
    "could",
    "do",
    "will",
    "my",
    "our",
    "how",
]
AUTHORS = [f"author-{i:02d}" for i in range(10)]
CATEGORIES = ["articles", "posts", "repositories"]
KEY = "bench-key"

CORPUS_VERSION = (
    "wordpiece-english-2"  # a corpus built by an older version of this script is rebuilt
)
QUESTION = (3, 6)  # content words per query
LONG_QUESTION = (12, 20)


@dataclass(frozen=True)
class Config:
    description: str
    env: dict[str, str]
    words: tuple[int, int] = QUESTION
    authored: bool = False  # each request names its author (request i: author i mod 10)


CONFIGS = {
    "default": Config("defaults: 1 query, hybrid, ef_search 40, ONNX query encoder", {}),
    "long": Config("as default, queries of 12-20 content words", {}, LONG_QUESTION),
    "torch": Config("as default, torch query encoder (batched)", {"TWIN_QUERY_ENCODER": "torch"}),
    "expanded": Config("2 queries (original + keyword rewrite)", {"TWIN_RAG_EXPANSIONS": "2"}),
    "ef100": Config("as default, ef_search 100", {"TWIN_HNSW_EF_SEARCH": "100"}),
    "uncapped": Config(
        "as default, the full-text arm ranks every match (no TWIN_RAG_LEXICAL_MAX_MATCHES cap)",
        {"TWIN_RAG_LEXICAL_MAX_MATCHES": "1000000000"},
    ),
    "cap500": Config(
        "as default, the full-text arm ranks at most 500 matches",
        {"TWIN_RAG_LEXICAL_MAX_MATCHES": "500"},
    ),
    "author": Config(
        "as default, each request for one author of ten (a twin's own retrieval)", {}, authored=True
    ),
    "author-ef200": Config(
        "as author, ef_search 200", {"TWIN_HNSW_EF_SEARCH": "200"}, authored=True
    ),
}


def vocabulary(size: int) -> list[str]:
    """English words, most frequent first: the whole words of the embedding model's WordPiece vocabulary.

    BERT's vocabulary lists words roughly by corpus frequency, so a Zipf law over this order gives
    realistic posting lists, and queries tokenize like real questions (one token per word).
    """
    from twin_platform.features.embedding import load_tokenizer

    stop = set(STOPWORDS)
    ordered = sorted(load_tokenizer().get_vocab().items(), key=lambda item: item[1])
    words = [w for w, _ in ordered if w.isascii() and w.isalpha() and len(w) >= 3 and w not in stop]
    return words[:size]


def zipf_weights(n: int, offset: int = 100, s: float = 1.1) -> np.ndarray:
    weights = 1.0 / (np.arange(1, n + 1) + offset) ** s
    return weights / weights.sum()


def clustered_vectors(rows: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    basis = np.random.default_rng(0).normal(size=(64, dim)).astype(np.float32)
    centres = np.random.default_rng(1).normal(size=(500, 64)).astype(np.float32)
    latent = centres[rng.integers(0, 500, rows)] + rng.normal(size=(rows, 64)).astype(np.float32)
    vectors = latent @ basis + 2.0 * rng.normal(size=(rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def corpus_batches(
    rows: int, batch: int = 10_000, words_per_chunk: int = 80
) -> Iterator[tuple[list[CleanedDocument], list[Chunk], np.ndarray]]:
    """The synthetic corpus, `batch` chunks at a time (10 per document, documents round-robin over
    AUTHORS and CATEGORIES), each batch from its own seed: the same rows on every build, in
    constant memory at any size."""
    vocab = vocabulary(20_000)
    weights = zipf_weights(len(vocab))
    per_doc = 10
    for start in range(0, rows, batch):
        n = min(batch, rows - start)
        nrng = np.random.default_rng((7, start))
        word_ids = nrng.choice(len(vocab), size=(n, words_per_chunk), p=weights)
        stop_ids = nrng.integers(0, len(STOPWORDS), size=(n, words_per_chunk))
        use_stop = nrng.random((n, words_per_chunk)) < 0.45
        docs, chunks = [], []
        for i in range(n):
            d, c = divmod(start + i, per_doc)
            author, category = AUTHORS[d % len(AUTHORS)], CATEGORIES[d % len(CATEGORIES)]
            url = f"https://bench.example/{author}/{d}"
            document_id = hashlib.sha256(url.encode()).hexdigest()
            if c == 0 or i == 0:
                docs.append(
                    CleanedDocument(
                        document_id,
                        author,
                        category,
                        "web",
                        url,
                        None,
                        "",
                        "h",
                        "en",
                        None,
                        "ok",
                        "bench",
                    )
                )
            text = " ".join(
                STOPWORDS[s] if stop else vocab[w]
                for w, s, stop in zip(word_ids[i], stop_ids[i], use_stop[i], strict=True)
            )
            chunks.append(
                Chunk(
                    chunk_id=f"{document_id[:40]}-{c}",
                    document_id=document_id,
                    author=author,
                    category=category,
                    source_url=url,
                    chunk_index=c,
                    content=text,
                    token_count=100,
                )
            )
        yield docs, chunks, clustered_vectors(n, 384, nrng)


def write_corpus(url: str, rows: int, marker: Path) -> float:
    """Write `rows` chunks unless this version's corpus is there (`marker`); returns seconds spent.

    Written as the feature pipeline writes a first bulk load: the rows without the HNSW index (the
    caller builds it once, after).
    """
    from twin_platform.storage.feature_store import hnsw, writes
    from twin_platform.storage.postgres import connect

    if marker.exists() and marker.read_text() == f"{CORPUS_VERSION} {rows}":
        return 0.0
    started = time.perf_counter()
    marker.unlink(missing_ok=True)
    with connect(url) as conn:
        conn.execute("TRUNCATE cleaned_documents CASCADE")
        hnsw.drop_index(conn)
        written = 0
        for docs, chunks, vectors in corpus_batches(rows):
            writes.upsert_cleaned(conn, docs)
            written += writes.insert_embeddings(conn, chunks, vectors, "synthetic")
            if written % 100_000 == 0:
                print(f"  inserted {written:,} chunks", flush=True)
        conn.execute("VACUUM ANALYZE embedded_chunks")
    marker.write_text(f"{CORPUS_VERSION} {rows}")
    return time.perf_counter() - started


def build_corpus(url: str, rows: int, marker: Path) -> float:
    """The corpus (`write_corpus`) with the HNSW indexes of the TWIN_HNSW_* settings (the shared
    one, and each author's own under TWIN_HNSW_AUTHOR_INDEX_ROWS), built as the pipeline builds
    them (memory and workers the embedded server grants, progress printed) where missing or
    defined otherwise. Returns the seconds spent."""
    from twin_platform.servers.postgres import index_build_budget
    from twin_platform.settings import load_settings
    from twin_platform.storage.feature_store import hnsw
    from twin_platform.storage.postgres import connect

    s = load_settings()
    spec = hnsw.HnswSpec(s.hnsw_m, s.hnsw_ef_construction, s.hnsw_storage)
    seconds = write_corpus(url, rows, marker)
    with connect(url) as conn:
        budget = index_build_budget(s.hnsw_build_memory, s.hnsw_build_workers)
        reports = [hnsw.ensure_index(conn, spec, budget, print_progress)]
        reports += hnsw.ensure_author_indexes(
            conn, spec, budget, s.hnsw_author_index_rows, print_progress
        )
    for report in reports:
        if report.built:
            print(
                f"  {report.index} {spec}: {report.seconds:.0f} s, {report.index_bytes / 2**20:.0f} MB"
            )
        elif report.reason != "up to date":
            print(f"  {report.index}: dropped ({report.reason})")
    return seconds + sum(report.seconds for report in reports)


def print_progress(p: Any) -> None:
    """An HNSW build's progress (`hnsw.BuildProgress`), one line per reading."""
    print(
        f"  HNSW build of {p.index}: {p.phase}, {p.tuples_done:,} of {p.tuples_expected:,} tuples"
        f" ({p.percent:.0f}%) after {p.seconds:.0f} s",
        flush=True,
    )


def make_queries(n: int, words: tuple[int, int] = (3, 6), seed: int = 11) -> list[str]:
    """Questions of `words` content words drawn like the corpus (so some are common, most are not)."""
    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    vocab = vocabulary(20_000)
    weights = zipf_weights(len(vocab))
    templates = [
        "What does {a} say about {w}?",
        "{w}",
        "How do I {w}",
        "Write a post about {w}",
        "Explain {w}",
    ]
    queries = []
    for _ in range(n):
        picked = nrng.choice(len(vocab), size=rng.randint(*words), p=weights)
        template = rng.choice(templates)
        queries.append(
            template.format(
                a=rng.choice(AUTHORS).replace("-", " "), w=" ".join(vocab[i] for i in picked)
            )
        )
    return queries


def mean_tokens(queries: list[str]) -> float:
    """Tokens per query as the embedding model sees them ([CLS] and [SEP] included)."""
    from twin_platform.features.embedding import load_tokenizer

    tokenizer = load_tokenizer()
    return statistics.fmean(len(tokenizer.encode(q).ids) for q in queries)


def start_server(home: Path, port: int, extra_env: dict[str, str]) -> subprocess.Popen[bytes]:
    env = (
        os.environ
        | {
            "TWIN_HOME": str(home),
            "TWIN_API_KEYS": KEY,
            "TWIN_API_RATE_LIMIT_PER_MINUTE": "100000000",
            "HF_HUB_OFFLINE": "1",
            # One BLAS thread: on 2 shared cores two threads of one process fight (measured 2x slower).
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        }
        | extra_env
    )
    log = (home / "bench-api.log").open("ab")
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "twin"), "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}; see bench-api.log")
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit("server not ready in time")


def request_bodies(queries: list[str], authored: bool) -> list[dict[str, Any]]:
    """`POST /retrieve` bodies, k = 5; `authored`: request i names author i mod 10."""
    return [
        {"query": query, "k": 5} | ({"author": AUTHORS[i % len(AUTHORS)]} if authored else {})
        for i, query in enumerate(queries)
    ]


async def drive(
    url: str, bodies: list[dict[str, Any]], concurrency: int
) -> tuple[list[float], int, float, list[str]]:
    """Send every request body with `concurrency` requests in flight; returns latencies (ms), errors, seconds.

    aiohttp rather than httpx: the load shares the 2 cores with the server, and aiohttp spends about
    a third of httpx's CPU per request.
    """
    import aiohttp

    latencies: list[float] = []
    errors: list[str] = []
    cursor = iter(bodies)
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Authorization": f"Bearer {KEY}"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        url, connector=connector, headers=headers, timeout=timeout
    ) as client:

        async def worker() -> None:
            for body in cursor:
                started = time.perf_counter()
                try:
                    async with client.post("/retrieve", json=body) as response:
                        body = await response.json(content_type=None)
                        if response.status != 200 or not body["sources"]:
                            errors.append(f"{response.status}: {str(body)[:100]}")
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors.append(type(exc).__name__)
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, len(errors), time.perf_counter() - started, errors[:3]


def cpu_seconds(match: str) -> float:
    """CPU time (user + system) so far of the processes whose command line contains `match`."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and match in (entry / "cmdline").read_text().replace("\0", " "):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            continue
    return total


def machine_cpu_seconds() -> float:
    """Busy CPU time of the whole machine so far (all cores; steal included: time not ours either)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, iowait = fields[3], fields[4]
    return (sum(fields[:8]) - idle - iowait) / os.sysconf("SC_CLK_TCK")


def server_stages(url_db: str, since: float) -> dict[str, float]:
    """Median per-stage latency the server traced for the measured requests."""
    from datetime import UTC, datetime

    from twin_platform.storage.postgres import connect

    with connect(url_db) as conn:
        rows = conn.execute(
            "SELECT key, percentile_cont(0.5) WITHIN GROUP (ORDER BY value::float8)"
            " FROM traces, jsonb_each_text(latencies_ms) WHERE created_at >= %s GROUP BY key",
            (datetime.fromtimestamp(since, UTC),),
        ).fetchall()
    return {k: round(v, 1) for k, v in rows}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000, help="chunks in the corpus")
    parser.add_argument(
        "--requests", type=int, default=5000, help="measured requests per configuration"
    )
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--home", type=Path, default=Path("/tmp/twin-bench-api"), help="TWIN_HOME of the benchmark"
    )
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--configs", default=",".join(CONFIGS), help="comma-separated names of CONFIGS"
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="also write the Markdown report here"
    )
    args = parser.parse_args()

    os.environ["TWIN_HOME"] = str(args.home)
    os.environ.pop("DATABASE_URL", None)
    from twin_platform import servers
    from twin_platform.settings import load_settings

    db = servers.postgres_uri(load_settings())
    print(f"corpus: {args.rows:,} chunks in {args.home}", flush=True)
    built_s = build_corpus(db, args.rows, args.home / "bench-corpus.txt")
    rows = []
    for name in args.configs.split(","):
        config = CONFIGS[name]
        queries = make_queries(args.warmup + args.requests, config.words)
        bodies = request_bodies(queries, config.authored)
        proc = start_server(args.home, args.port, config.env)
        url = f"http://127.0.0.1:{args.port}"
        try:
            wait_ready(url, proc)
            asyncio.run(drive(url, bodies[: args.warmup], args.concurrency))
            since = time.time()
            cpu_before = [
                cpu_seconds("postgres"),
                cpu_seconds("twin serve"),
                time.process_time(),
                machine_cpu_seconds(),
            ]
            latencies, errors, seconds, samples = asyncio.run(
                drive(url, bodies[args.warmup :], args.concurrency)
            )
            cpu_after = [
                cpu_seconds("postgres"),
                cpu_seconds("twin serve"),
                time.process_time(),
                machine_cpu_seconds(),
            ]
            time.sleep(2)  # traces are written in the background
            stages = server_stages(db, since)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        n = len(latencies)
        cpu_ms = [
            (after - before) / n * 1000 for before, after in zip(cpu_before, cpu_after, strict=True)
        ]
        cpu_ms[3] -= sum(cpu_ms[:3])  # the machine's busy time less ours: other processes
        q = statistics.quantiles(latencies, n=100)
        rows.append(
            (
                f"{name}: {config.description}",
                mean_tokens(queries[args.warmup :]),
                n,
                errors,
                n / seconds,
                q[49],
                q[94],
                q[98],
                cpu_ms,
                stages,
            )
        )
        print(
            f"{name}: {rows[-1][4]:.1f} req/s, p95 {q[94]:.1f} ms, errors {errors} {samples}",
            flush=True,
        )

    lines = [
        "# API retrieval path under load",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_api.py --rows {args.rows} --requests {args.requests}"
        f" --concurrency {args.concurrency} --configs {args.configs}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()};"
        " server = `twin serve` (one uvicorn process), load = this script (aiohttp, asyncio) in"
        " another process on the same cores.",
        f"Corpus: {args.rows:,} chunks, 10 authors, 3 categories (build: {built_s:.0f} s, 0 = reused).",
        f"Requests: `POST /retrieve` with k=5, {args.requests:,} measured after {args.warmup} warm-up,"
        f" {args.concurrency} in flight. Goal: at 100k >= 80 req/s, p95 <= 200 ms; at 1M >= 100"
        " req/s, p95 <= 250 ms; 0 errors.",
        "CPU per request: CPU seconds of Postgres, the server and the load generator over the measured"
        " requests, divided by their number; `other`: the rest of the machine's busy time (other"
        " processes, steal), which should be near 0 for a clean run.",
        "",
        "| configuration | tokens/query | requests | errors | req/s | p50 ms | p95 ms | p99 ms"
        " | CPU ms/request: postgres, server, load, other | server median per stage (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, tokens, n, errors, rps, p50, p95, p99, cpu_ms, stages in rows:
        stage_text = ", ".join(f"{k} {v}" for k, v in sorted(stages.items()))
        cpu_text = ", ".join(f"{ms:.1f}" for ms in cpu_ms)
        lines.append(
            f"| {name} | {tokens:.1f} | {n} | {errors} | {rps:.1f} | {p50:.1f} | {p95:.1f}"
            f" | {p99:.1f} | {cpu_text} | {stage_text} |"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    if args.output:
        args.output.write_text(report)


if __name__ == "__main__":
    main()
