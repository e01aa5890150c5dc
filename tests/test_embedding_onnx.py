"""The feature pipeline's CPU encoders (ONNX Runtime, bfloat16 torch) embed real chunks like the
float32 torch model does."""

from __future__ import annotations

import numpy as np
import pytest

from twin_platform.features import embedding, pipeline
from twin_platform.features import query_encoder as qe
from twin_platform.features.embedding import load_embedder, native_bf16
from twin_platform.features.encoders import load_pipeline_embedder
from twin_platform.settings import load_settings
from twin_platform.storage import warehouse
from twin_platform.storage.postgres import connect

MIN_COSINE = 0.999  # per chunk; an int8 graph measured 0.94 and would fail


@pytest.mark.parametrize("backend", ["onnx", "torch-bf16"])
def test_pipeline_vectors_match_float32_torch_per_chunk(
    backend: str, sample_author: str, mongodb_url: str, postgres_url: str
) -> None:
    """The sample corpus (data/sample) through the three stages, embedded afresh by a CPU backend;
    every chunk's vector against the float32 torch model's."""
    if backend == "torch-bf16" and not native_bf16():
        pytest.skip("this CPU has no bfloat16 instructions")
    settings = load_settings()
    db = warehouse.connect(mongodb_url, settings.mongodb_database)
    embedder = load_pipeline_embedder(
        settings.embedding_model, settings.onnx_cache_dir, "cpu", backend
    )
    with connect(postgres_url) as conn:
        pipeline.sync_cleaned_documents(db, conn, sample_author)
        pipeline.sync_chunks(conn, sample_author, pipeline.build_chunker(settings.embedding_model))
        conn.execute("DELETE FROM embedded_chunks WHERE author = %s", (sample_author,))
        report = pipeline.sync_embeddings(conn, sample_author, embedder)
        rows = conn.execute(
            "SELECT content, embedding FROM embedded_chunks WHERE author = %s ORDER BY chunk_id",
            (sample_author,),
        ).fetchall()
    assert (report.backend, report.device) == (backend, "cpu")
    assert len(rows) == report.embedded > 100
    stored = np.stack([embedding.to_numpy() for _, embedding in rows])
    torch_vectors = load_embedder(settings.embedding_model, "cpu").encode([c for c, _ in rows])
    cosine = (stored * torch_vectors).sum(axis=1)
    assert cosine.min() >= MIN_COSINE, f"{(cosine < MIN_COSINE).sum()} chunks below {MIN_COSINE}"


def test_the_bulk_encoder_reuses_the_query_encoders_export() -> None:
    settings = load_settings()
    serving = qe.load_onnx_encoder(settings)
    bulk = load_pipeline_embedder(settings.embedding_model, settings.onnx_cache_dir, "cpu", "onnx")
    assert bulk.backend == "onnx" and bulk.dimension == 384
    assert [p.name for p in settings.onnx_cache_dir.iterdir()] == [
        qe.exported_model(settings.embedding_model, settings.onnx_cache_dir).name
    ]
    texts = ["Ship the boring thing first.", "pgvector HNSW at a million chunks"]
    assert np.allclose(bulk.encode(texts), serving(texts), atol=1e-6)
    assert bulk.encode([]).shape == (0, 384)


def test_auto_takes_bfloat16_where_the_cpu_has_it_and_checks_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings()
    auto = load_pipeline_embedder(settings.embedding_model, settings.onnx_cache_dir, "cpu")
    assert auto.backend == ("torch-bf16" if native_bf16() else "onnx")
    # The check rejects vectors that drift from float32's, and a CPU without the instructions.
    monkeypatch.setattr(embedding, "MIN_CHECK_COSINE", 1.001)
    monkeypatch.setattr(embedding, "native_bf16", lambda: True)
    embedding.load_bf16_embedder.cache_clear()  # checked once per process: check again
    with pytest.raises(embedding.PrecisionError, match="cosine"):
        embedding.load_bf16_embedder(settings.embedding_model)
    fallback = load_pipeline_embedder(settings.embedding_model, settings.onnx_cache_dir, "cpu")
    assert fallback.backend == "onnx"
    monkeypatch.setattr(embedding, "native_bf16", lambda: False)
    with pytest.raises(embedding.PrecisionError, match="no bfloat16"):
        load_pipeline_embedder(
            settings.embedding_model, settings.onnx_cache_dir, "cpu", "torch-bf16"
        )
