"""Feature pipeline throughput against raw `SentenceTransformer.encode`, side by side in one run.

`throughput` (default): in each round a fresh synthetic corpus (articles, posts, repositories) goes
through the whole pipeline (warehouse read, clean, chunk, embed, COPY into pgvector with its HNSW and
GIN indexes), and the very same chunk texts through the bare `model.encode`; rounds alternate which
side runs first, so that load from other processes weighs on both alike. Then a re-run with nothing
new, and one after editing 5% of the documents.

`memory`: peak RSS of the pipeline while it embeds `--chunks` short posts (one chunk each), sampled
every second, to show that streaming keeps memory flat whatever the corpus size.

    .venv/bin/python benchmarks/bench_features.py --documents 30 --rounds 4
    .venv/bin/python benchmarks/bench_features.py --mode memory --chunks 100000
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import tempfile
import threading
import time
from pathlib import Path

import psutil

WORDS = [
    "vector",
    "search",
    "index",
    "chunk",
    "token",
    "model",
    "embedding",
    "postgres",
    "query",
    "latency",
    "recall",
    "batch",
    "stream",
    "document",
    "article",
    "post",
    "repository",
    "author",
    "writing",
    "voice",
    "style",
    "retrieval",
    "context",
    "pipeline",
    "asset",
    "partition",
    "sensor",
    "schedule",
    "metadata",
    "lineage",
    "memory",
    "throughput",
    "cosine",
    "distance",
    "graph",
    "layer",
]


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(8, 22))]
    return " ".join(words).capitalize() + rng.choice([".", ".", ".", "!", "?"])


def corpus(author: str, documents: int, seed: int = 0) -> list:
    from twin_platform.documents import Article, Post, Repository

    rng = random.Random(seed)
    docs: list = []
    for i in range(documents):
        kind = i % 6
        if kind in (0, 1, 2):
            paragraphs = [
                " ".join(sentence(rng) for _ in range(rng.randint(2, 6)))
                for _ in range(rng.randint(6, 14))
            ]
            body = "\n\n".join(
                f"## Section {j}\n\n{p}" if j % 4 == 0 else p for j, p in enumerate(paragraphs)
            )
            docs.append(
                Article(
                    author=author,
                    platform="web",
                    url=f"https://b.test/a/{i}",
                    content=f"# Title {i}\n\n{body}",
                )
            )
        elif kind in (3, 4):
            docs.append(
                Post(
                    author=author,
                    platform="x",
                    url=f"https://b.test/p/{i}",
                    content=" ".join(sentence(rng) for _ in range(rng.randint(1, 5))),
                )
            )
        else:
            functions = "\n\n\n".join(
                f'def {rng.choice(WORDS)}_{j}(value):\n    """{sentence(rng)}"""\n'
                + "".join(
                    f"    value = value + {k}  # {rng.choice(WORDS)}\n"
                    for k in range(rng.randint(3, 15))
                )
                + "    return value"
                for j in range(rng.randint(3, 10))
            )
            docs.append(
                Repository(
                    author=author,
                    platform="github",
                    url=f"https://github.com/b/r{i}",
                    content=f"# r{i}\n\n## src/mod_{i}.py\n\n```python\n{functions}\n```\n",
                )
            )
    return docs


def insert(db, docs: list) -> None:  # type: ignore[no-untyped-def]
    from pymongo import ReplaceOne

    by_category: dict[str, list] = {}
    for doc in docs:
        by_category.setdefault(doc.category.value, []).append(
            ReplaceOne({"author": doc.author, "url": doc.url}, doc.to_mongo(), upsert=True)
        )
    for category, ops in by_category.items():
        for start in range(0, len(ops), 1000):
            db[category].bulk_write(ops[start : start + 1000], ordered=False)


def setup(home: Path | None) -> tuple[str, object]:
    os.environ.setdefault(
        "TWIN_HOME", str(home or Path(tempfile.mkdtemp(prefix="bench-features-")))
    )
    os.environ["TWIN_MONGO_PORT"] = os.environ.get("TWIN_MONGO_PORT", "27123")
    from twin_platform import servers
    from twin_platform.settings import load_settings
    from twin_platform.storage import warehouse

    url = servers.postgres_uri(load_settings())
    db = warehouse.connect(servers.mongodb_uri(load_settings()), "bench")
    warehouse.ensure_indexes(db)
    return url, db


def header(args: argparse.Namespace, extra: str) -> list[str]:
    import torch

    return [
        f"Command: `python benchmarks/bench_features.py {extra}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared with other work), "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}, "
        f"load average at start {os.getloadavg()[0]:.1f}",
        "",
    ]


def throughput(args: argparse.Namespace) -> list[str]:
    from twin_platform.features import pipeline
    from twin_platform.features.cleaning import clean
    from twin_platform.features.embedding import load_embedder

    url, db = setup(args.home)
    embedder = load_embedder(batch_size=args.batch_size)
    embedder.encode(["warm up the model"] * 8)
    chunker = pipeline.build_chunker(embedder.name)

    def raw(texts: list[str]) -> float:
        started = time.perf_counter()
        embedder.model.encode(
            texts, batch_size=args.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return time.perf_counter() - started

    rows: list[str] = []
    totals = {"raw": 0.0, "pipeline": 0.0, "chunks": 0, "tokens": 0}
    stamp = int(time.time())
    for round_ in range(args.rounds):
        author = f"bench-{stamp}-{round_}"
        docs = corpus(author, args.documents, seed=round_)
        insert(db, docs)
        # The exact texts the pipeline will embed (cut here untimed), for the raw side.
        texts = [
            c.content
            for d in docs
            for c in chunker.chunk(
                pipeline.document_id(d.category.value, author, d.url),
                d.category.value,
                clean(d.content, d.category.value).content,
            )
        ]

        def run_pipeline(author: str = author) -> tuple[float, pipeline.FeatureSyncReport]:
            started = time.perf_counter()
            result = pipeline.sync_author(db, url, author, embedder, batch_size=args.window)
            return time.perf_counter() - started, result

        if round_ % 2 == 0:  # alternate the order so that drifting load weighs on both sides
            raw_s = raw(texts)
            pipeline_s, result = run_pipeline()
        else:
            pipeline_s, result = run_pipeline()
            raw_s = raw(texts)
        n = result.embedding.embedded
        assert n == len(texts), (n, len(texts))
        tokens = sum(chunker.count(texts)) + n * chunker.special_tokens
        totals["raw"] += raw_s
        totals["pipeline"] += pipeline_s
        totals["chunks"] += n
        totals["tokens"] += tokens
        rows.append(
            f"| {round_ + 1} ({'raw first' if round_ % 2 == 0 else 'pipeline first'}) | {n} | "
            f"{raw_s:.1f} | {pipeline_s:.1f} (clean {result.cleaning.seconds:.1f}, chunk "
            f"{result.chunking.seconds:.1f}, embed+write {result.embedding.seconds:.1f} of which COPY "
            f"{result.embedding.write_seconds:.1f} overlapped) | "
            f"{n / raw_s:.2f} | {n / pipeline_s:.2f} | {raw_s / pipeline_s:.2f} |"
        )
        print(rows[-1], flush=True)

    started = time.perf_counter()
    again = pipeline.sync_author(db, url, author, embedder)
    rerun_s = time.perf_counter() - started
    rng = random.Random(1)
    edited = [
        d.model_copy(update={"content": d.content + "\n\n" + sentence(rng)})
        for d in rng.sample(docs, max(1, len(docs) // 20))
    ]
    insert(db, edited)
    started = time.perf_counter()
    third = pipeline.sync_author(db, url, author, embedder)
    edit_s = time.perf_counter() - started
    n = int(totals["chunks"])
    ratio = totals["raw"] / totals["pipeline"]
    written = again.cleaning.written + again.chunking.chunks + again.embedding.embedded
    lines = header(
        args,
        f"--documents {args.documents} --rounds {args.rounds} --batch-size {args.batch_size} --window {args.window}",
    )
    lines += [
        f"{args.rounds} rounds, each a fresh author of {args.documents} documents (articles, posts, "
        f"repositories): {n} chunks, {int(totals['tokens']):,} tokens in all (mean "
        f"{totals['tokens'] / max(n, 1):.0f} per chunk).",
        "",
        "| round | chunks | raw encode s | pipeline s | raw chunks/s | pipeline chunks/s | pipeline / raw |",
        "|---|---|---|---|---|---|---|",
        *rows,
        f"| **all** | {n} | {totals['raw']:.1f} | {totals['pipeline']:.1f} | {n / totals['raw']:.2f} | "
        f"{n / totals['pipeline']:.2f} | **{ratio:.2f}** |",
        "",
        f"Re-run with nothing new: {rerun_s:.2f} s, {written} rows written. After editing "
        f"{len(edited)} of the last round's documents: {edit_s:.2f} s, {third.cleaning.changed} re-cleaned, "
        f"{third.embedding.embedded} chunks embedded, {third.embedding.deleted} deleted.",
    ]
    return lines


def memory(args: argparse.Namespace) -> list[str]:
    from twin_platform.documents import Post
    from twin_platform.features import pipeline
    from twin_platform.features.embedding import load_embedder

    url, db = setup(args.home)
    author = f"bench-mem-{int(time.time())}"
    rng = random.Random(3)
    process = psutil.Process()
    for start in range(0, args.chunks, 1000):  # fresh author: plain inserts, faster than upserts
        posts = range(start, min(start + 1000, args.chunks))
        db["posts"].insert_many(
            [
                Post(
                    author=author, platform="x", url=f"https://m.test/{i}", content=sentence(rng)
                ).to_mongo()
                for i in posts
            ],
            ordered=False,
        )
    embedder = load_embedder(batch_size=args.batch_size)
    baseline = process.memory_info().rss
    peak = {"rss": baseline}
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(1.0):
            rss = process.memory_info().rss
            peak["rss"] = max(peak["rss"], rss)
            samples.append((time.perf_counter(), rss))

    sampler = threading.Thread(target=sample, daemon=True)
    started = time.perf_counter()
    sampler.start()
    result = pipeline.sync_author(db, url, author, embedder, batch_size=args.window)
    done.set()
    sampler.join()
    elapsed = time.perf_counter() - started
    quarter = [
        max(
            (
                r
                for t, r in samples
                if started + elapsed * q / 4 <= t < started + elapsed * (q + 1) / 4
            ),
            default=0,
        )
        for q in range(4)
    ]
    lines = header(args, f"--mode memory --chunks {args.chunks} --window {args.window}")
    lines += [
        f"Embedded {result.embedding.embedded:,} chunks (short posts, one chunk each) in {elapsed:.0f} s.",
        "",
        "| measure | MiB |",
        "|---|---|",
        f"| RSS after loading the model, before the run | {baseline / 2**20:.0f} |",
        f"| peak RSS during the run | **{peak['rss'] / 2**20:.0f}** |",
        *(
            f"| peak RSS in quarter {q + 1} of the run | {r / 2**20:.0f} |"
            for q, r in enumerate(quarter)
        ),
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=["throughput", "memory"], default="throughput")
    parser.add_argument("--documents", type=int, default=30, help="throughput: documents per round")
    parser.add_argument(
        "--rounds", type=int, default=4, help="throughput: rounds, alternating the order"
    )
    parser.add_argument("--chunks", type=int, default=100_000, help="memory: chunks to embed")
    parser.add_argument(
        "--batch-size", type=int, default=64, help="texts per forward pass (both sides)"
    )
    parser.add_argument("--window", type=int, default=256, help="chunks per embedding transaction")
    parser.add_argument(
        "--home", type=Path, default=None, help="TWIN_HOME for the servers (default: a temp dir)"
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="Also write the Markdown report here"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    lines = throughput(args) if args.mode == "throughput" else memory(args)
    if args.home is None:
        from twin_platform import servers
        from twin_platform.settings import load_settings

        servers.down(load_settings())  # the temporary servers are not needed any more
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)


if __name__ == "__main__":
    main()
