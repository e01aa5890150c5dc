"""The feature pipeline's encoder (`load_pipeline_embedder`): on CPU torch with bfloat16 products
where the CPU has them, else ONNX Runtime; on a GPU the GPU encoder; or plain torch.

Above both `embedding` (the torch and GPU encoders) and `query_encoder` (the ONNX export the API
uses), so the bulk path reuses the serving export without either module importing the other.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from twin_platform.features.embedding import (
    ExportError,
    PrecisionError,
    TextEmbedder,
    load_bf16_embedder,
    load_embedder,
    load_gpu_embedder,
    resolve_device,
)
from twin_platform.features.query_encoder import OnnxQueryEncoder, exported_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OnnxEmbedder:
    """The model on ONNX Runtime (CPU), from the serving encoder's export, checked against torch.

    Its worker threads (one per core, one ONNX Runtime thread each, the GIL released while they
    compute) take waiting texts of similar length together, so batches barely pad.
    """

    name: str
    encoder: OnnxQueryEncoder
    dimension: int
    max_tokens: int
    backend: ClassVar[str] = "onnx"
    device: ClassVar[str] = "cpu"

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-norm float32 vectors, one row per text."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self.encoder(texts)


@functools.cache
def load_onnx_embedder(name: str, cache_dir: Path) -> OnnxEmbedder:
    """The cached export of `name` under `cache_dir` (exported and checked the first time)."""
    encoder = OnnxQueryEncoder(exported_model(name, cache_dir))
    dimension = int(encoder(["dimension probe"]).shape[1])
    return OnnxEmbedder(name, encoder, dimension, encoder.max_tokens)


def load_pipeline_embedder(
    name: str,
    onnx_cache: Path,
    device: str = "auto",
    backend: str = "auto",
    batch_size: int = 64,
    cuda_batch_size: int = 256,
    cuda_dtype: str = "float16",
) -> TextEmbedder:
    """The feature pipeline's encoder: the fastest that gives the float32 model's vectors, or the
    one asked for (`backend`: auto, torch-bf16, onnx, torch).

    `auto` on CPU: `torch-bf16` where the CPU multiplies bfloat16 in hardware and the vectors pass
    the check, else `onnx`, else torch (a pipeline the exported graph cannot reproduce), with a
    warning for each fallback. On a GPU each forward pass takes `cuda_batch_size` texts, in
    `cuda_dtype`.
    """
    device = resolve_device(device)
    if device != "cpu":
        if backend not in ("auto", "torch"):
            raise ValueError(
                f"the {backend} embedding backend runs on CPU, not {device}: use torch"
            )
        if device.startswith("cuda"):
            return load_gpu_embedder(name, device, cuda_batch_size, cuda_dtype)
        return load_embedder(name, device, batch_size)
    if backend in ("auto", "torch-bf16"):
        try:
            return load_bf16_embedder(name, batch_size)
        except PrecisionError as exc:
            if backend != "auto":
                raise
            log.info("embedding: %s; trying ONNX Runtime", exc)
    if backend in ("auto", "onnx"):
        try:
            return load_onnx_embedder(name, onnx_cache)
        except ExportError as exc:
            if backend != "auto":
                raise
            log.warning("embedding: %s; using torch", exc)
    return load_embedder(name, device, batch_size)
