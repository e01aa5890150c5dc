"""The SQL models of `dbt_like_sql/` as assets: lineage to the tables and models they read, their
materialization (view, table, incremental), and their YAML tests as asset checks.

The work is `twin_platform.storage.sql_models`; a new model is one `.sql` file there (and its tests
in `schema.yml`), with nothing to add here.
"""

from collections.abc import Iterator

import dagster as dg

from assets.check_results import asset_check_result
from resources import PostgresResource
from twin_platform.reporting import markdown_table
from twin_platform.storage.sql_models import (
    SqlModel,
    compile_model,
    load_project,
    preview,
    run_model,
    run_tests,
    test_name,
)

PROJECT = load_project()

# Tables the API writes: shown in the lineage, materialized by no asset.
EXTERNAL_TABLES = [
    dg.AssetSpec(
        source.table,
        group_name="monitoring",
        kinds={"postgres"},
        description=f"`{source.schema}.{source.table}`, written by the RAG API.",
    )
    for source in PROJECT.sources.values()
    if not source.assets
]


def _deps(model: SqlModel) -> list[dg.AssetKey]:
    keys = [dg.AssetKey(name) for name in model.refs]
    for source in model.sources:
        keys += [dg.AssetKey(name) for name in source.assets or (source.table,)]
    return keys


def sql_model_asset(model: SqlModel) -> dg.AssetsDefinition:
    @dg.asset(
        name=model.name,
        group_name="analytics",
        deps=_deps(model),
        kinds={"postgres", "sql"},
        description=f"{model.description} (`dbt_like_sql/{model.name}.sql`, a {model.materialized}"
        f" `analytics.{model.name}`)",
        check_specs=[dg.AssetCheckSpec(test_name(t), asset=model.name) for t in model.tests],
    )
    def _model(
        postgres: PostgresResource,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        with postgres.connection() as conn:
            rows = run_model(conn, PROJECT, model)
            sample = preview(conn, model)
            tests = run_tests(conn, model)
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": rows,
                "table": model.table,
                "materialized": model.materialized,
                "preview": dg.MetadataValue.md(markdown_table(sample)),
                "sql": dg.MetadataValue.md(f"```sql\n{compile_model(PROJECT, model)}\n```"),
            }
        )
        for result in tests:
            yield asset_check_result(result)

    return _model


SQL_MODEL_ASSETS = [sql_model_asset(model) for model in PROJECT.ordered()]
