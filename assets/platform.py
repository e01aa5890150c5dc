"""The stores every other asset writes into: their schema and indexes, as assets with lineage."""

import dagster as dg

from resources import PostgresResource, WarehouseResource
from twin_platform.documents import Category
from twin_platform.storage.postgres import describe
from twin_platform.storage.warehouse import ensure_indexes


@dg.asset(group_name="platform", kinds={"postgres"})
def feature_store_schema(
    context: dg.AssetExecutionContext, postgres: PostgresResource
) -> dg.MaterializeResult:
    """Postgres + pgvector schema, migrated idempotently; downstream feature tables live here."""
    with postgres.connection() as conn:
        info = describe(conn)
    context.log.info(
        "feature store at PostgreSQL %s, migrations %s", info["server_version"], info["migrations"]
    )
    return dg.MaterializeResult(
        metadata={
            "server_version": info["server_version"],
            "migrations": dg.MetadataValue.json(info["migrations"]),
            "extensions": dg.MetadataValue.json(info["extensions"]),
            "tables": dg.MetadataValue.md(
                "| table | rows (est.) |\n|---|---|\n"
                + "\n".join(f"| {name} | {rows} |" for name, rows in info["tables"].items())
            ),
        }
    )


@dg.asset(group_name="platform", kinds={"mongodb"})
def warehouse_collections(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """One collection per category, unique on (author, url), so every ingest is an upsert."""
    db = warehouse.db()
    ensure_indexes(db)
    counts = {c.value: db[c.value].estimated_document_count() for c in Category}
    return dg.MaterializeResult(
        metadata={f"documents/{name}": count for name, count in counts.items()}
        | {"database": db.name}
    )
