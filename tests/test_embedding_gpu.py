"""The GPU bulk encoder computes the model's own vectors (checked on CPU; on CUDA with -m gpu)."""

from __future__ import annotations

import numpy as np
import pytest

from twin_platform.features.embedding import GpuEmbedder, load_embedder, load_gpu_embedder
from twin_platform.features.encoders import load_pipeline_embedder
from twin_platform.settings import load_settings

TEXTS = [
    "My sourdough starter is called Gerald. I feed Gerald rye flour every morning at six.",
    "",
    "Crème brûlée, naïve café — ünïcödé survives",
    "pgvector " * 400,  # past the model's 256 tokens: truncated like sentence-transformers does
    *[f"chunk {i}: {'vector search at night ' * (i % 9)}" for i in range(20)],
]


def test_the_gpu_feeder_computes_the_models_vectors() -> None:
    """Its own tokenizing, padding, pooling and normalising equal sentence-transformers' encode."""
    embedder = load_gpu_embedder("bundled", "cpu", batch_size=7, dtype="float32")
    assert isinstance(embedder, GpuEmbedder) and embedder.pooling == "mean" and embedder.normalize
    got = embedder.encode(TEXTS)
    expected = load_embedder("bundled", "cpu").encode(TEXTS)
    assert got.shape == expected.shape == (len(TEXTS), 384) and got.dtype == np.float32
    assert (got * expected).sum(axis=1).min() > 0.9999
    assert embedder.encode([]).shape == (0, 384)


@pytest.mark.gpu
def test_half_precision_on_cuda_keeps_the_vectors() -> None:
    settings = load_settings()
    fast = load_pipeline_embedder(settings.embedding_model, settings.onnx_cache_dir, "cuda")
    assert fast.device.startswith("cuda") and isinstance(fast, GpuEmbedder)
    reference = load_embedder(settings.embedding_model, "cuda", dtype="float32").encode(TEXTS)
    assert (fast.encode(TEXTS) * reference).sum(axis=1).min() >= 0.999
