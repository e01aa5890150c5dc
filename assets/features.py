"""The feature pipeline as assets, one partition per author: cleaned documents → chunks → embeddings.

Each asset calls one function of `twin_platform.features.pipeline`; each is incremental, so a
materialization with nothing new in the warehouse writes nothing and takes seconds.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg
import psycopg
from pydantic import Field

from assets.partitions import authors
from resources import EmbeddingModelResource, PostgresResource, SettingsResource, WarehouseResource
from twin_platform.features import pipeline
from twin_platform.features.embedding import model_max_tokens
from twin_platform.reporting import histogram_markdown, markdown_table
from twin_platform.servers.postgres import index_build_budget
from twin_platform.settings import Settings, load_settings
from twin_platform.storage.feature_store import hnsw, stats
from twin_platform.storage.feature_store.quality import measure_quality
from twin_platform.storage.feature_store.writes import embedding_dimension

RAW_ASSETS = [
    dg.AssetKey("raw_articles"),
    dg.AssetKey("raw_posts"),
    dg.AssetKey("raw_repositories"),
]


class FeatureRunConfig(dg.Config):
    batch_size: int = Field(
        default_factory=lambda: load_settings().feature_batch_size,
        ge=1,
        description="Documents (or chunks) per transaction; default TWIN_FEATURE_BATCH_SIZE.",
    )


def _chunk_limit(settings: SettingsResource, embedding_model: EmbeddingModelResource) -> int:
    return min(settings.settings.chunk_max_tokens, model_max_tokens(embedding_model.model_name))


def _counts_metadata(conn: psycopg.Connection, author: str) -> dict[str, Any]:
    counts = stats.category_counts(conn, author)
    per_category = {
        f"{column}/{row['category']}": int(row[column])
        for row in counts.iter_rows(named=True)
        for column in ("documents", "chunks", "embedded")
    }
    return {
        "counts_by_category": dg.MetadataValue.md(markdown_table(counts)),
        # The author's cleaned documents: the datasets' automation compares it across runs.
        "documents": int(counts["documents"].sum()) if counts.height else 0,
    } | per_category


@dg.asset(
    partitions_def=authors,
    group_name="features",
    deps=RAW_ASSETS,
    kinds={"postgres", "polars"},
)
def cleaned_documents(
    context: dg.AssetExecutionContext,
    config: FeatureRunConfig,
    settings: SettingsResource,
    postgres: PostgresResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    """The author's raw documents, cleaned with their meaning kept (code, URLs, Markdown), in Postgres.

    Only new or changed documents (by content hash) are cleaned; deleted ones are removed."""
    author = context.partition_key
    with postgres.connection() as conn:
        result = pipeline.sync_cleaned_documents(
            warehouse.db(), conn, author, config.batch_size, settings.settings.max_document_chars
        )
        counts = _counts_metadata(conn, author)
    context.log.info(
        "%s: %d new, %d changed, %d deleted, %d unchanged in %.1f s",
        author,
        result.new,
        result.changed,
        result.deleted,
        result.unchanged,
        result.seconds,
    )
    return dg.MaterializeResult(
        metadata={
            "in_warehouse": result.in_warehouse,
            "new": result.new,
            "changed": result.changed,
            "deleted": result.deleted,
            "unchanged": result.unchanged,
            "by_status": dg.MetadataValue.json(result.by_status),
            "by_language": dg.MetadataValue.json(result.by_language),
            "boilerplate_lines_removed": result.boilerplate_lines_removed,
            # Chrome measured per platform (documents, recurrence threshold, lines) and dropped now.
            "boilerplate_by_platform": dg.MetadataValue.json(
                {
                    p: {k: v for k, v in s.items() if k != "top"}
                    for p, s in result.boilerplate.items()
                }
            ),
            "boilerplate_lines": dg.MetadataValue.md(
                markdown_table(
                    [{"line": line, "documents": n} for line, n in result.dropped_lines.items()],
                    limit=40,
                    width=90,
                    empty="_nothing dropped in this run_",
                )
            ),
            "pii_scrubbed": dg.MetadataValue.json(result.scrubbed),
            "seconds": round(result.seconds, 2),
            "table": "cleaned_documents",
        }
        | counts
    )


@dg.asset(
    partitions_def=authors,
    group_name="features",
    deps=[cleaned_documents],
    kinds={"postgres"},
)
def chunks(
    context: dg.AssetExecutionContext,
    config: FeatureRunConfig,
    settings: SettingsResource,
    postgres: PostgresResource,
    embedding_model: EmbeddingModelResource,
) -> dg.MaterializeResult:
    """Token-aware chunks per category (posts whole, articles by paragraph with overlap, code by
    file and definition), measured with the embedding model's own tokenizer."""
    author = context.partition_key
    chunker = pipeline.build_chunker(embedding_model.model_name, settings.settings.chunk_max_tokens)
    with postgres.connection() as conn:
        result = pipeline.sync_chunks(conn, author, chunker, config.batch_size)
        tokens = stats.token_counts(conn, author)
        samples = stats.sample_chunks(conn, author, n=6)
        counts = _counts_metadata(conn, author)
    context.log.info(
        "%s: re-chunked %d documents into %d chunks", author, result.documents, result.chunks
    )
    return dg.MaterializeResult(
        metadata={
            "documents_rechunked": result.documents,
            "chunks_written": result.chunks,
            "chunks_total": len(tokens),
            "max_tokens": chunker.max_tokens,
            "mean_tokens": round(sum(tokens) / len(tokens), 1) if tokens else 0.0,
            "token_histogram": dg.MetadataValue.md(
                histogram_markdown(
                    {"chunks": tokens},
                    f"chunk lengths of {author}",
                    xlabel="tokens per chunk (special tokens included)",
                    ylabel="chunks",
                    marker=(chunker.max_tokens, f"model limit {chunker.max_tokens}"),
                )
            ),
            "sample_chunks": dg.MetadataValue.md(markdown_table(samples)),
            "chunker_fingerprint": chunker.fingerprint,
            "seconds": round(result.seconds, 2),
        }
        | counts
    )


def _index_policy(s: Settings) -> hnsw.IndexPolicy:
    """The HNSW definition and build budget of TWIN_HNSW_* (the server's own where DATABASE_URL)."""
    return hnsw.IndexPolicy(
        spec=hnsw.HnswSpec(s.hnsw_m, s.hnsw_ef_construction, s.hnsw_storage),
        budget=index_build_budget(
            s.hnsw_build_memory, s.hnsw_build_workers, embedded=s.database_url is None
        ),
        bulk_load_rows=s.hnsw_bulk_load_rows,
        author_index_rows=s.hnsw_author_index_rows,
    )


def _log_index_build(context: dg.AssetExecutionContext, index: hnsw.BuildReport) -> None:
    if not index.built:
        context.log.info("HNSW index %s dropped (%s)", index.index, index.reason)
        return
    context.log.info(
        "HNSW index %s built (%s%s): %d rows in %.0f s, maintenance_work_mem %d MB for a %d MB"
        " graph, %d parallel workers, %d MB on disk",
        index.index,
        index.reason,
        f", author {index.author}" if index.author else "",
        index.rows,
        index.seconds,
        index.memory_bytes // 2**20,
        index.graph_bytes // 2**20,
        index.workers,
        index.index_bytes // 2**20,
    )


@dg.asset(
    partitions_def=authors,
    group_name="features",
    deps=[chunks],
    kinds={"postgres", "pgvector"},
)
def embedded_chunks(
    context: dg.AssetExecutionContext,
    config: FeatureRunConfig,
    settings: SettingsResource,
    postgres: PostgresResource,
    embedding_model: EmbeddingModelResource,
) -> dg.MaterializeResult:
    """Chunks with normalised embeddings (pgvector, HNSW cosine) and a tsvector: what RAG searches.

    Only chunks without a vector are embedded; vectors of vanished chunks are deleted. A bulk load
    into a small store builds the HNSW index once at the end, reporting its progress here."""
    author = context.partition_key
    s = settings.settings
    embedder = embedding_model.load_for_pipeline()
    # A GPU's forward pass takes a whole page: pages of at least its batch size there.
    on_gpu = embedder.device.startswith("cuda")
    page = max(config.batch_size, s.embedding_cuda_batch_size) if on_gpu else config.batch_size

    def log_build(p: hnsw.BuildProgress) -> None:
        context.log.info(
            "HNSW build of %s: %s, %d of %d tuples (%.0f%%) after %.0f s",
            p.index,
            p.phase,
            p.tuples_done,
            p.tuples_expected,
            p.percent,
            p.seconds,
        )

    with postgres.connection() as conn:
        result = pipeline.sync_embeddings(
            conn,
            author,
            embedder,
            page,
            _index_policy(s),
            on_index_progress=log_build,
            writers=s.embedding_writers,
        )
        counts = _counts_metadata(conn, author)
    context.log.info(
        "%s: embedded %d chunks (%.1f chunks/s, %s on %s), deleted %d",
        author,
        result.embedded,
        result.chunks_per_second,
        result.backend,
        result.device,
        result.deleted,
    )
    index = result.index
    shared = [index] if index is not None and index.built else []
    for report in shared + result.author_indexes:
        _log_index_build(context, report)
    return dg.MaterializeResult(
        metadata={
            "embedded": result.embedded,
            "deleted": result.deleted,
            "reindexed": result.reindexed,
            "chunks_per_second": round(result.chunks_per_second, 1),
            "model": embedder.name,
            "backend": result.backend,
            "device": result.device,
            "dimension": embedder.dimension,
            "seconds": round(result.seconds, 2),
            "encode_seconds": round(result.encode_seconds, 2),
            "write_seconds": round(result.write_seconds, 2),
            "index_deferred": result.index_deferred,
            "index_built": bool(index and index.built),
            "index_seconds": round(index.seconds, 1) if index else 0.0,
            "author_indexes_built": sum(r.built for r in result.author_indexes),
            "table": "embedded_chunks",
        }
        | counts
    )


# One check step reads both tables after the embedding, so the chunks' checks report on `chunks`
# without blocking (a blocking check on `chunks` would have to run before `embedded_chunks`); the
# embedded chunks' checks block everything downstream.
QUALITY_CHECKS = [
    dg.AssetCheckSpec(
        "chunk_ids_are_unique",
        asset="chunks",
        description="Chunk ids (sha256 of document id + text) never repeat, in chunks nor in"
        " embedded_chunks.",
    ),
    dg.AssetCheckSpec(
        "chunks_fit_the_model",
        asset="chunks",
        description="No chunk is longer than the model reads (it would be truncated silently).",
    ),
    dg.AssetCheckSpec(
        "embeddings_are_complete_unit_vectors",
        asset="embedded_chunks",
        blocking=True,
        description="Every chunk has an embedding of the column's dimension with unit norm.",
    ),
    dg.AssetCheckSpec(
        "no_orphan_chunks",
        asset="embedded_chunks",
        blocking=True,
        description="No chunk without its document, no embedding without its chunk.",
    ),
]


@dg.multi_asset_check(specs=QUALITY_CHECKS)
def feature_quality(
    context: dg.AssetCheckExecutionContext,
    settings: SettingsResource,
    postgres: PostgresResource,
    embedding_model: EmbeddingModelResource,
) -> Iterator[dg.AssetCheckResult]:
    """The feature tables' invariants for the partition's author, all from one quality query."""
    author = context.partition_key if context.has_partition_key else None
    limit = _chunk_limit(settings, embedding_model)
    with postgres.connection() as conn:
        q = measure_quality(conn, author, embedding_dimension(conn), limit)
    yield dg.AssetCheckResult(
        asset_key="chunks",
        check_name="chunk_ids_are_unique",
        passed=q.duplicate_chunk_ids == 0,
        metadata={"duplicates": q.duplicate_chunk_ids},
    )
    yield dg.AssetCheckResult(
        asset_key="chunks",
        check_name="chunks_fit_the_model",
        passed=q.over_token_limit == 0,
        metadata={"over_limit": q.over_token_limit, "longest": q.max_tokens_seen, "limit": limit},
    )
    yield dg.AssetCheckResult(
        asset_key="embedded_chunks",
        check_name="embeddings_are_complete_unit_vectors",
        passed=q.wrong_dimension == 0 and q.not_unit_norm == 0 and q.missing_embeddings == 0,
        metadata={
            "embedded": q.embedded,
            "wrong_dimension": q.wrong_dimension,
            "not_unit_norm": q.not_unit_norm,
            "missing_embeddings": q.missing_embeddings,
        },
    )
    yield dg.AssetCheckResult(
        asset_key="embedded_chunks",
        check_name="no_orphan_chunks",
        passed=q.orphan_chunks == 0 and q.orphan_embeddings == 0,
        metadata={"orphan_chunks": q.orphan_chunks, "orphan_embeddings": q.orphan_embeddings},
    )
