"""Query embedding for serving: the feature pipeline's model, exported once to ONNX Runtime on CPU.

Every request embeds its query, so this cost decides the API's throughput. On these cores
sentence-transformers (torch) takes ~36 ms for a 22-token query where the same weights in ONNX
Runtime take ~17 ms (measured in benchmarks/results/api.md), and queries waiting together are
embedded in shared, length-grouped calls. The graph is exported from the loaded sentence-transformers model,
checked against it on probe texts, and cached under TWIN_HOME/cache/onnx/, so later starts need
neither torch nor the export. On GPU the torch model batches queries instead (`BatchedEncoder`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from twin_platform.features.embedding import ExportError, pooling_of
from twin_platform.fsutil import publishing
from twin_platform.settings import Settings

log = logging.getLogger(__name__)

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
PROBES = [
    "How does she decide when to page someone?",
    "pgvector HNSW recall at ef_search 40",
    "Ship the boring thing first.",
]
MIN_PROBE_COSINE = 0.9999


Encoder = Callable[[list[str]], np.ndarray]


class BatchedEncoder:
    """Embeds queries from many threads in shared batches: one model call serves every waiting request.

    A batch of 16 short queries costs about as much as two single ones on CPU, so under concurrent
    load this multiplies throughput; a lone request waits at most `max_wait_s` for company.
    """

    def __init__(self, encode: Encoder, max_batch: int = 64, max_wait_s: float = 0.002) -> None:
        self._encode = encode
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._pending: list[tuple[str, Future[np.ndarray]]] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="query-encoder", daemon=True)
        self._thread.start()

    def __call__(self, texts: list[str]) -> np.ndarray:
        futures: list[Future[np.ndarray]] = [Future() for _ in texts]
        with self._cond:
            self._pending.extend(zip(texts, futures, strict=True))
            self._cond.notify()
        return np.stack([f.result() for f in futures])

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
            time.sleep(self._max_wait_s)  # let concurrent requests join this batch
            with self._cond:
                batch, self._pending = (
                    self._pending[: self._max_batch],
                    self._pending[self._max_batch :],
                )
            try:
                vectors = self._encode([text for text, _ in batch])
            except Exception as exc:  # handed to every waiting caller, who raises it
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, future), vector in zip(batch, vectors, strict=True):
                future.set_result(vector)


def default_encoder(model: str, device: str = "auto") -> Encoder:
    """The feature pipeline's embedding model (TWIN_EMBEDDING_MODEL): queries and chunks share one space."""
    from twin_platform.features.embedding import load_embedder

    return load_embedder(model, device).encode


@contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """The exporter logs its progress and optional operators (torchvision's) it skips: noise here."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@contextmanager
def _plain_attention(model: Any) -> Iterator[None]:
    """The model with plain (eager) attention while it exports, its own after (it is shared): plain
    attention exports as MatMul and Softmax, which ONNX Runtime runs faster than the exported SDPA
    graph (its NaN guards and mask slicing in every layer)."""
    attention = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(attention)


# Bumped whenever `export` writes a different graph, so older exports in caches are redone.
EXPORT_VERSION = "2-eager-attention"


def cache_key(model_name: str, model_path: str) -> str:
    """Changes when the model's files change (a local folder), its name does (a hub id), or the
    export does (`EXPORT_VERSION`)."""
    digest = hashlib.sha256(f"{EXPORT_VERSION}\0{model_name}".encode())
    folder = Path(model_path)
    if folder.is_dir():
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            stat = file.stat()
            digest.update(f"{file.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    slug = "".join(c if c.isalnum() else "-" for c in model_name)[-48:]
    return f"{slug}-{digest.hexdigest()[:12]}"


def export(model_name: str, dest: Path) -> Path:
    """Export the model's transformer to `dest/model.onnx` with its tokenizer and pooling, verified.

    Written into a temporary folder and renamed at the end, so a crash never leaves a half export.
    """
    import torch

    from twin_platform.features.embedding import load_embedder

    embedder = load_embedder(model_name, "cpu")
    pooling, normalize = pooling_of(embedder.model)
    transformer = embedder.model[0]
    sample = transformer.tokenizer(PROBES[:2], padding=True, return_tensors="pt")
    inputs = [name for name in INPUTS if name in sample]
    model = transformer.auto_model.eval()
    try:
        with publishing(dest, replace=True) as staging:
            with (
                warnings.catch_warnings(),
                _quiet_loggers("torch.onnx", "onnx_ir", "onnxscript"),
                _plain_attention(model),
            ):
                warnings.simplefilter("ignore")  # the exporter's notes on dynamic axes
                torch.onnx.export(
                    model,
                    (),
                    str(staging / "model.onnx"),
                    kwargs={name: sample[name] for name in inputs},
                    input_names=inputs,
                    output_names=["last_hidden_state"],
                    dynamic_axes={
                        name: {0: "batch", 1: "tokens"} for name in [*inputs, "last_hidden_state"]
                    },
                    dynamo=True,
                    external_data=False,
                    verbose=False,
                )
            transformer.tokenizer.backend_tokenizer.save(str(staging / "tokenizer.json"))
            meta = {
                "source": model_name,
                "inputs": inputs,
                "pooling": pooling,
                "normalize": normalize,
                "max_tokens": embedder.max_tokens,
            }
            (staging / "encoder.json").write_text(json.dumps(meta, indent=2))
            exported = OnnxQueryEncoder(staging)
            cosine = (exported(PROBES) * embedder.encode(PROBES)).sum(axis=1)
            if normalize and cosine.min() < MIN_PROBE_COSINE:
                raise ExportError(
                    f"exported graph disagrees with the model (cosine {cosine.min():.6f})"
                )
    except Exception as exc:
        if isinstance(exc, ExportError):
            raise
        raise ExportError(f"ONNX export of {model_name} failed: {exc}") from exc
    return dest


# A call costs a fixed ~4 ms (streaming the weights from memory) plus ~0.6 ms per token, padding
# included (measured on these cores): a query joins a batch while the padding it adds stays within
# about one call's fixed cost.
PAD_BUDGET_TOKENS = 8
# Tokens (batch x longest) per call. Long chunks in bulk made batches of 32 x 256 tokens (100 MB
# per attention tensor): two workers grew the process by 1.4 GB. Capped at 8,192 / 2,048 / 1,024
# tokens: +1.4 GB / +0.3 GB / +0.1 GB, and no slower (small dry runs on loaded cores); the fixed
# cost of a call stays about 1% of a capped one's.
MAX_BATCH_TOKENS = 1024


def length_groups(
    lengths: list[int], pad_budget: int = PAD_BUDGET_TOKENS, max_tokens: int = MAX_BATCH_TOKENS
) -> list[list[int]]:
    """Indices of `lengths` in batches, shortest first; each batch is padded to its longest.

    Walking the lengths in order, one joins the current batch while the batch's total padding (to
    this new longest length) stays within `pad_budget` tokens and the padded batch within
    `max_tokens`; otherwise it starts the next batch.
    """
    groups: list[list[int]] = []
    total = 0  # tokens in the current batch
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        width = (len(groups[-1]) + 1) * lengths[i] if groups else 0
        if groups and width - total - lengths[i] <= pad_budget and width <= max_tokens:
            groups[-1].append(i)
            total += lengths[i]
        else:
            groups.append([i])
            total = lengths[i]
    return groups


@dataclass
class _Job:
    ids: list[int]
    done: Future[np.ndarray] = field(default_factory=Future)


class OnnxQueryEncoder:
    """Embeds texts on ONNX Runtime for many request threads at once.

    Requests queue their tokenized texts; one worker thread per core takes the oldest waiting text
    together with the waiting texts of similar length (`length_groups`) and runs them as one call,
    which shares the call's fixed cost. First come, first served; a lone request runs at once, alone:
    batching never adds a wait. ONNX Runtime releases the GIL while it computes, so the workers use
    every core.
    """

    def __init__(self, folder: Path, workers: int | None = None, max_batch: int = 32) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        meta = json.loads((folder / "encoder.json").read_text())
        self.inputs: list[str] = meta["inputs"]
        self.pooling: str = meta["pooling"]
        self.normalize: bool = meta["normalize"]
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.max_tokens = int(meta["max_tokens"])
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_tokens)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self._max_batch = max_batch
        self._pending: list[_Job] = []  # oldest first
        self._ready = threading.Condition()
        for i in range(workers or os.cpu_count() or 1):
            threading.Thread(target=self._work, name=f"query-encoder-{i}", daemon=True).start()

    def __call__(self, texts: list[str]) -> np.ndarray:
        jobs = [_Job(encoding.ids) for encoding in self.tokenizer.encode_batch(texts)]
        with self._ready:
            self._pending.extend(jobs)
            self._ready.notify(len(jobs))
        return np.stack([job.done.result() for job in jobs])

    def embed_ids(self, batch: list[list[int]]) -> np.ndarray:
        """One forward pass over token-id lists (padded to the longest), pooled and normalised."""
        width = max(len(ids) for ids in batch)
        input_ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        arrays = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": 0 * input_ids}
        hidden = self.session.run(None, {name: arrays[name] for name in self.inputs})[0]
        if self.pooling == "cls":
            vectors = hidden[:, 0]
        else:
            vectors = (hidden * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        if self.normalize:
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors.astype(np.float32)

    def _next_batch(self) -> list[_Job]:
        """The oldest waiting job and those of the waiting jobs that share its length group."""
        with self._ready:
            while not self._pending:
                self._ready.wait()
            window = self._pending[: self._max_batch]
            group = next(g for g in length_groups([len(job.ids) for job in window]) if 0 in g)
            batch = [window[i] for i in sorted(group)]
            taken = {id(job) for job in batch}
            self._pending = [job for job in self._pending if id(job) not in taken]
        return batch

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            try:
                vectors = self.embed_ids([job.ids for job in batch])
            except Exception as exc:  # handed to each waiting caller, who raises it
                for job in batch:
                    job.done.set_exception(exc)
                continue
            for job, vector in zip(batch, vectors, strict=True):
                job.done.set_result(vector)


def exported_model(model_name: str, cache_dir: Path) -> Path:
    """The folder of the model's checked ONNX export under `cache_dir`, exporting it first if needed.

    Shared by the API's query encoder and the feature pipeline's bulk encoder: one export each model.
    """
    from twin_platform.features.embedding import resolve_model_path

    folder = cache_dir / cache_key(model_name, resolve_model_path(model_name))
    if not (folder / "encoder.json").exists():
        log.info("exporting %s to ONNX (once; cached in %s)", model_name, folder)
        export(model_name, folder)
    return folder


def load_onnx_encoder(settings: Settings) -> OnnxQueryEncoder:
    """The cached export for TWIN_EMBEDDING_MODEL, exporting it first when there is none."""
    return OnnxQueryEncoder(exported_model(settings.embedding_model, settings.onnx_cache_dir))


def query_encoder(settings: Settings) -> Encoder:
    """The serving encoder for TWIN_QUERY_ENCODER: `onnx` (CPU), `torch` (batched), or `auto`.

    `auto` uses ONNX Runtime unless the embedding device is a GPU, and falls back to torch with a
    warning when the model cannot be exported.
    """
    choice = settings.query_encoder
    if choice == "auto":
        from twin_platform.features.embedding import resolve_device

        choice = "onnx" if resolve_device(settings.embedding_device) == "cpu" else "torch"
        if choice == "onnx":
            try:
                return load_onnx_encoder(settings)
            except ExportError as exc:
                log.warning("query encoder: %s; using torch", exc)
                choice = "torch"
    if choice == "onnx":
        return load_onnx_encoder(settings)
    return BatchedEncoder(default_encoder(settings.embedding_model, settings.embedding_device))
