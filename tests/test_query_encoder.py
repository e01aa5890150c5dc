"""The serving query encoder: the ONNX export must embed exactly like the feature pipeline's model."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from twin_platform.features import query_encoder as qe
from twin_platform.features.embedding import load_embedder, native_bf16, resolve_model_path
from twin_platform.features.encoders import load_pipeline_embedder
from twin_platform.features.query_encoder import BatchedEncoder
from twin_platform.settings import load_settings

TEXTS = [
    "How does she decide when to page someone?",
    "",
    "Crème brûlée, naïve café — ünïcödé survives",
    "pgvector "
    * 400,  # longer than the model's 256 tokens: truncated like sentence-transformers does
]


def test_onnx_encoder_matches_the_model_and_is_cached(
    twin_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings()
    encoder = qe.load_onnx_encoder(settings)
    expected = load_embedder(settings.embedding_model).encode(TEXTS)
    got = encoder(TEXTS)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert (got * expected).sum(axis=1).min() > 0.9999
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)

    def no_export(*args: object) -> None:
        raise AssertionError("the cached export should be reused")

    monkeypatch.setattr(qe, "export", no_export)
    again = qe.load_onnx_encoder(settings)
    assert np.allclose(again(TEXTS[:1]), got[:1], atol=1e-6)
    assert isinstance(qe.query_encoder(settings), qe.OnnxQueryEncoder)  # auto on CPU


def test_concurrent_calls_share_batches_and_get_their_own_vectors(twin_home: Path) -> None:
    encoder = qe.load_onnx_encoder(load_settings())
    texts = [f"question {i}: {'why ' * (i % 7)}vector search at night?" for i in range(32)]
    alone = np.stack([encoder.embed_ids([encoder.tokenizer.encode(t).ids])[0] for t in texts])
    with ThreadPoolExecutor(16) as pool:
        together = np.stack(list(pool.map(lambda t: encoder([t])[0], texts)))
    assert np.allclose(together, alone, atol=1e-5)  # padding and batch shape change nothing
    assert np.allclose(encoder(texts), alone, atol=1e-5)


def test_length_groups_bound_the_padding() -> None:
    assert qe.length_groups([]) == []
    assert qe.length_groups([10, 10, 10, 10]) == [[0, 1, 2, 3]]
    # 9 joins 8 (1 pad token), 12 too (4 + 3 = 7 <= 8); 30 would pad 58: its own batch.
    assert qe.length_groups([12, 8, 30, 9]) == [[1, 3, 0], [2]]
    lengths = [5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
    groups = qe.length_groups(lengths)
    assert sorted(i for g in groups for i in g) == list(range(10))
    for group in groups:
        longest = max(lengths[i] for i in group)
        assert sum(longest - lengths[i] for i in group) <= qe.PAD_BUDGET_TOKENS
    # Long texts of one length: batches stop at MAX_BATCH_TOKENS (bulk embedding's memory bound).
    assert [len(g) for g in qe.length_groups([256] * 9)] == [4, 4, 1]


def test_an_unexportable_model_falls_back_to_torch(tmp_path: Path, twin_home: Path) -> None:
    """A max-pooling pipeline has no ONNX equivalent here: `auto` serves it with torch instead."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling, Transformer

    transformer = Transformer(resolve_model_path("bundled"))
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="max")
    folder = tmp_path / "max-pooled"
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(folder))

    settings = load_settings(embedding_model=str(folder), embedding_device="cpu")
    with pytest.raises(qe.ExportError, match="pooling"):
        qe.load_onnx_encoder(settings)
    assert not list((settings.home / "cache" / "onnx").glob(".export-*"))  # nothing half-written
    encoder = qe.query_encoder(settings)
    assert isinstance(encoder, BatchedEncoder)
    assert encoder(["still answers"]).shape == (1, 384)
    # The feature pipeline's `auto` backend falls back the same way (where bfloat16 is no option).
    bulk = load_pipeline_embedder(str(folder), settings.onnx_cache_dir, "cpu")
    assert bulk.backend == ("torch-bf16" if native_bf16() else "torch")
    assert bulk.encode(["still embeds"]).shape == (1, 384)


def test_cache_key_follows_the_model_files(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    first = qe.cache_key("my/model", str(tmp_path))
    assert qe.cache_key("my/model", str(tmp_path)) == first
    (tmp_path / "config.json").write_text('{"changed": true}')
    assert qe.cache_key("my/model", str(tmp_path)) != first
    assert qe.cache_key("org/hub-model", "org/hub-model") != qe.cache_key("org/other", "org/other")
