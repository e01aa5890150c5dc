"""The feature pipeline as assets, one partition per author: cleaned documents → chunks → embeddings.

Each asset calls one function of `twin_platform.features.pipeline`; each is incremental, so a
materialization with nothing new in the warehouse writes nothing and takes seconds.
"""

from typing import Any

import dagster as dg
from pydantic import Field

from assets.partitions import authors
from resources import EmbeddingModelResource, PostgresResource, WarehouseResource
from twin_platform import sql_models
from twin_platform.features import pipeline, report, store
from twin_platform.features.embedding import model_max_tokens
from twin_platform.settings import load_settings
from twin_platform.storage import postgres as pg_store

RAW_ASSETS = [
    dg.AssetKey("raw_articles"),
    dg.AssetKey("raw_posts"),
    dg.AssetKey("raw_repositories"),
]


class FeatureRunConfig(dg.Config):
    batch_size: int | None = Field(
        default=None,
        description="Documents (or chunks) per transaction; default TWIN_FEATURE_BATCH_SIZE.",
    )


def _model_name(embedding_model: EmbeddingModelResource) -> str:
    return embedding_model.model or load_settings().embedding_model


def _max_tokens(embedding_model: EmbeddingModelResource) -> int:
    return min(load_settings().chunk_max_tokens, model_max_tokens(_model_name(embedding_model)))


def _counts_metadata(conn: Any, author: str) -> dict[str, Any]:
    counts = store.category_counts(conn, author)
    per_category = {
        f"{column}/{row['category']}": int(row[column])
        for row in counts.iter_rows(named=True)
        for column in ("documents", "chunks", "embedded")
    }
    return {"counts_by_category": dg.MetadataValue.md(report.markdown_table(counts))} | per_category


@dg.asset(
    partitions_def=authors,
    group_name="features",
    deps=RAW_ASSETS,
    kinds={"postgres", "polars"},
    automation_condition=dg.AutomationCondition.eager(),
)
def cleaned_documents(
    context: dg.AssetExecutionContext,
    config: FeatureRunConfig,
    postgres: PostgresResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    """The author's raw documents, cleaned with their meaning kept (code, URLs, Markdown), in Postgres.

    Only new or changed documents (by content hash) are cleaned; deleted ones are removed."""
    settings = load_settings()
    author = context.partition_key
    with pg_store.connect(postgres.uri(), autocommit=True) as conn:
        result = pipeline.sync_cleaned_documents(
            warehouse.db(),
            conn,
            author,
            config.batch_size or settings.feature_batch_size,
            settings.max_document_chars,
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
    automation_condition=dg.AutomationCondition.eager(),
)
def chunks(
    context: dg.AssetExecutionContext,
    config: FeatureRunConfig,
    postgres: PostgresResource,
    embedding_model: EmbeddingModelResource,
) -> dg.MaterializeResult:
    """Token-aware chunks per category (posts whole, articles by paragraph with overlap, code by
    file and definition), measured with the embedding model's own tokenizer."""
    settings = load_settings()
    author = context.partition_key
    chunker = pipeline.build_chunker(_model_name(embedding_model), settings.chunk_max_tokens)
    with pg_store.connect(postgres.uri(), autocommit=True) as conn:
        result = pipeline.sync_chunks(
            conn, author, chunker, config.batch_size or settings.feature_batch_size
        )
        tokens = store.token_counts(conn, author)
        samples = store.sample_chunks(conn, author, n=6)
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
                report.token_histogram_markdown(
                    tokens, chunker.max_tokens, f"chunk lengths of {author}"
                )
            ),
            "sample_chunks": dg.MetadataValue.md(report.samples_markdown(samples)),
            "chunker_fingerprint": chunker.fingerprint,
            "seconds": round(result.seconds, 2),
        }
        | counts
    )


@dg.asset(
    partitions_def=authors,
    group_name="features",
    deps=[chunks],
    kinds={"postgres", "pgvector"},
    automation_condition=dg.AutomationCondition.eager(),
)
def embedded_chunks(
    context: dg.AssetExecutionContext,
    config: FeatureRunConfig,
    postgres: PostgresResource,
    embedding_model: EmbeddingModelResource,
) -> dg.MaterializeResult:
    """Chunks with normalised embeddings (pgvector, HNSW cosine) and a tsvector: what RAG searches.

    Only chunks without a vector are embedded; vectors of vanished chunks are deleted."""
    settings = load_settings()
    author = context.partition_key
    url = postgres.uri()
    embedder = embedding_model.load()
    result = pipeline.sync_embeddings(
        url, author, embedder, config.batch_size or settings.feature_batch_size
    )
    with pg_store.connect(url, autocommit=True) as conn:
        counts = _counts_metadata(conn, author)
    context.log.info(
        "%s: embedded %d chunks (%.1f chunks/s), deleted %d",
        author,
        result.embedded,
        result.chunks_per_second,
        result.deleted,
    )
    return dg.MaterializeResult(
        metadata={
            "embedded": result.embedded,
            "deleted": result.deleted,
            "reindexed": result.reindexed,
            "chunks_per_second": round(result.chunks_per_second, 1),
            "model": embedder.name,
            "device": str(embedder.model.device),
            "dimension": embedder.dimension,
            "seconds": round(result.seconds, 2),
            "encode_seconds": round(result.encode_seconds, 2),
            "write_seconds": round(result.write_seconds, 2),
            "table": "embedded_chunks",
        }
        | counts
    )


def _quality(
    context: dg.AssetCheckExecutionContext,
    postgres: PostgresResource,
    embedding_model: EmbeddingModelResource,
) -> store.FeatureQuality:
    author = context.partition_key if context.has_partition_key else None
    with pg_store.connect(postgres.uri(), autocommit=True) as conn:
        return store.quality(
            conn, author, store.embedding_dimension(conn), _max_tokens(embedding_model)
        )


@dg.asset_check(asset=embedded_chunks, blocking=True)
def embeddings_are_complete_unit_vectors(
    context: dg.AssetCheckExecutionContext,
    postgres: PostgresResource,
    embedding_model: EmbeddingModelResource,
) -> dg.AssetCheckResult:
    """Every chunk has an embedding of the column's dimension with unit norm."""
    q = _quality(context, postgres, embedding_model)
    return dg.AssetCheckResult(
        passed=q.wrong_dimension == 0 and q.not_unit_norm == 0 and q.missing_embeddings == 0,
        metadata={
            "embedded": q.embedded,
            "wrong_dimension": q.wrong_dimension,
            "not_unit_norm": q.not_unit_norm,
            "missing_embeddings": q.missing_embeddings,
        },
    )


@dg.asset_check(asset=embedded_chunks, blocking=True)
def no_orphan_chunks(
    context: dg.AssetCheckExecutionContext,
    postgres: PostgresResource,
    embedding_model: EmbeddingModelResource,
) -> dg.AssetCheckResult:
    """No chunk without its document, no embedding without its chunk."""
    q = _quality(context, postgres, embedding_model)
    return dg.AssetCheckResult(
        passed=q.orphan_chunks == 0 and q.orphan_embeddings == 0,
        metadata={"orphan_chunks": q.orphan_chunks, "orphan_embeddings": q.orphan_embeddings},
    )


@dg.asset_check(asset=chunks, blocking=True)
def chunk_ids_are_unique(
    context: dg.AssetCheckExecutionContext,
    postgres: PostgresResource,
    embedding_model: EmbeddingModelResource,
) -> dg.AssetCheckResult:
    """Chunk ids (sha256 of document id + text) never repeat, in chunks nor in embedded_chunks."""
    q = _quality(context, postgres, embedding_model)
    return dg.AssetCheckResult(
        passed=q.duplicate_chunk_ids == 0, metadata={"duplicates": q.duplicate_chunk_ids}
    )


@dg.asset_check(asset=chunks, blocking=True)
def chunks_fit_the_model(
    context: dg.AssetCheckExecutionContext,
    postgres: PostgresResource,
    embedding_model: EmbeddingModelResource,
) -> dg.AssetCheckResult:
    """No chunk is longer than the model reads (it would be truncated silently at embedding time)."""
    q = _quality(context, postgres, embedding_model)
    limit = _max_tokens(embedding_model)
    return dg.AssetCheckResult(
        passed=q.over_token_limit == 0,
        metadata={"over_limit": q.over_token_limit, "longest": q.max_tokens_seen, "limit": limit},
    )


FEATURE_TABLES = {
    "cleaned_documents": cleaned_documents.key,
    "chunks": chunks.key,
    "embedded_chunks": embedded_chunks.key,
}


def sql_model_asset(model: sql_models.SqlModel) -> dg.AssetsDefinition:
    """One asset per `dbt_like_sql` model, with lineage to the tables and models it reads."""
    deps = [FEATURE_TABLES.get(name, dg.AssetKey(name)) for name in model.depends_on]

    @dg.asset(
        name=model.name,
        group_name="feature_analytics",
        deps=deps,
        kinds={"postgres", "sql"},
        description=f"{model.description} (`dbt_like_sql/{model.name}.sql` → `{model.table}`)",
        automation_condition=dg.AutomationCondition.eager(),
    )
    def _model(postgres: PostgresResource) -> dg.MaterializeResult:
        with pg_store.connect(postgres.uri(), autocommit=True) as conn:
            rows = sql_models.run_model(conn, model)
            sample = sql_models.preview(conn, model)
        return dg.MaterializeResult(
            metadata={
                "rows": rows,
                "table": model.table,
                "preview": dg.MetadataValue.md(report.markdown_table(sample)),
                "sql": dg.MetadataValue.md(f"```sql\n{model.sql}\n```"),
            }
        )

    return _model


SQL_MODEL_ASSETS = [sql_model_asset(model) for model in sql_models.load_models()]
