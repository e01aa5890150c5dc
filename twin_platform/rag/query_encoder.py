"""Query embedding for serving: the feature pipeline's model, exported once to ONNX Runtime on CPU.

Every request embeds its query alone, so per-call cost decides the API's throughput. On these cores
sentence-transformers (torch) takes ~36 ms for a 22-token query where the same weights in ONNX
Runtime take ~17 ms, which is the floor set by the matrix multiplications (measured in
benchmarks/results/api.md). The graph is exported from the loaded sentence-transformers model,
checked against it on probe texts, and cached under TWIN_HOME/cache/onnx/, so later starts need
neither torch nor the export. On GPU the torch model batches queries instead (`BatchedEncoder`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from twin_platform.rag.retriever import BatchedEncoder, Encoder, default_encoder
from twin_platform.settings import Settings

log = logging.getLogger(__name__)

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
PROBES = [
    "How does she decide when to page someone?",
    "pgvector HNSW recall at ef_search 40",
    "Ship the boring thing first.",
]
MIN_PROBE_COSINE = 0.9999


class ExportError(RuntimeError):
    """The model's pipeline cannot be reproduced by the exported graph (or the export failed)."""


def _pooling_of(model: Any) -> tuple[str, bool]:
    """(`mean` or `cls`, normalise?) for a Transformer -> Pooling [-> Normalize] pipeline, else raise."""
    names = [type(module).__name__ for module in model]
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise ExportError(f"unsupported sentence-transformers pipeline: {names}")
    mode = getattr(model[1], "pooling_mode", None)
    if mode not in ("mean", "cls") or not getattr(model[1], "include_prompt", True):
        raise ExportError(f"unsupported pooling: {mode}")
    return mode, len(names) == 3


def cache_key(model_name: str, model_path: str) -> str:
    """Changes when the model's files change (a local folder) or its name does (a hub id)."""
    digest = hashlib.sha256(model_name.encode())
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
    pooling, normalize = _pooling_of(embedder.model)
    transformer = embedder.model[0]
    sample = transformer.tokenizer(PROBES[:2], padding=True, return_tensors="pt")
    inputs = [name for name in INPUTS if name in sample]
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=dest.parent))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes on dynamic axes
            torch.onnx.export(
                transformer.auto_model.eval(),
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
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, ExportError):
            raise
        raise ExportError(f"ONNX export of {model_name} failed: {exc}") from exc
    return dest


class OnnxQueryEncoder:
    """Embeds texts one at a time (no padding) on ONNX Runtime, from any number of threads.

    ONNX Runtime releases the GIL while it computes, so request threads embed in parallel; a
    semaphore keeps at most `concurrency` of them computing (one per core) so that the others queue
    instead of slowing every running one down.
    """

    def __init__(self, folder: Path, concurrency: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        meta = json.loads((folder / "encoder.json").read_text())
        self.inputs: list[str] = meta["inputs"]
        self.pooling: str = meta["pooling"]
        self.normalize: bool = meta["normalize"]
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(int(meta["max_tokens"]))
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self._slots = threading.BoundedSemaphore(concurrency or os.cpu_count() or 1)

    def _embed(self, text: str) -> np.ndarray:
        encoding = self.tokenizer.encode(text)
        arrays = {
            "input_ids": encoding.ids,
            "attention_mask": encoding.attention_mask,
            "token_type_ids": encoding.type_ids,
        }
        feeds = {name: np.asarray([arrays[name]], dtype=np.int64) for name in self.inputs}
        with self._slots:
            hidden = self.session.run(None, feeds)[0][0]
        vector = hidden[0] if self.pooling == "cls" else hidden.mean(axis=0)
        if self.normalize:
            vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
        return vector.astype(np.float32)

    def __call__(self, texts: list[str]) -> np.ndarray:
        return np.stack([self._embed(text) for text in texts])


def load_onnx_encoder(settings: Settings) -> OnnxQueryEncoder:
    """The cached export for TWIN_EMBEDDING_MODEL, exporting it first when there is none."""
    from twin_platform.features.embedding import resolve_model_path

    name = settings.embedding_model
    folder = settings.home / "cache" / "onnx" / cache_key(name, resolve_model_path(name))
    if not (folder / "encoder.json").exists():
        log.info("exporting %s to ONNX (once; cached in %s)", name, folder)
        export(name, folder)
    return OnnxQueryEncoder(folder)


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
