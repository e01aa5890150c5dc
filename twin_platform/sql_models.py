"""A small dbt-like runner: each `dbt_like_sql/*.sql` file is one SELECT, materialized as a table.

The first comment line is the model's description; a `-- depends_on: a, b` line names the tables or
other models it reads (other models are read as `analytics.<name>`), which gives run order and
lineage. Each model is rebuilt in one transaction (DROP + CREATE TABLE AS), so readers see the old
table or the new one, never a half-built one.
"""

from __future__ import annotations

from dataclasses import dataclass
from graphlib import TopologicalSorter
from pathlib import Path

import polars as pl
import psycopg
from psycopg import sql

from twin_platform.settings import PROJECT_ROOT

MODELS_DIR = PROJECT_ROOT / "dbt_like_sql"
SCHEMA = "analytics"


@dataclass(frozen=True)
class SqlModel:
    name: str
    sql: str
    description: str
    depends_on: tuple[str, ...]

    @property
    def table(self) -> str:
        return f"{SCHEMA}.{self.name}"


def parse_model(path: Path) -> SqlModel:
    text = path.read_text()
    comments = [line[2:].strip() for line in text.splitlines() if line.startswith("--")]
    depends = next((c.split(":", 1)[1] for c in comments if c.startswith("depends_on:")), "")
    description = next((c for c in comments if not c.startswith("depends_on:")), path.stem)
    return SqlModel(
        name=path.stem,
        sql=text.strip().rstrip(";"),
        description=description,
        depends_on=tuple(d.strip() for d in depends.split(",") if d.strip()),
    )


def load_models(folder: Path = MODELS_DIR) -> list[SqlModel]:
    """Every model in the folder, dependencies first."""
    models = {m.name: m for m in map(parse_model, sorted(folder.glob("*.sql")))}
    graph = {name: [d for d in m.depends_on if d in models] for name, m in models.items()}
    return [models[name] for name in TopologicalSorter(graph).static_order()]


def run_model(conn: psycopg.Connection, model: SqlModel) -> int:
    """Rebuild the model's table; returns its row count. `conn` must be autocommit."""
    table = sql.Identifier(SCHEMA, model.name)
    with conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        conn.execute(sql.SQL("CREATE TABLE {} AS ").format(table) + sql.SQL(model.sql))  # type: ignore[arg-type]
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
    return int(row[0]) if row else 0


def preview(conn: psycopg.Connection, model: SqlModel, limit: int = 20) -> pl.DataFrame:
    cursor = conn.execute(
        sql.SQL("SELECT * FROM {} LIMIT %s").format(sql.Identifier(SCHEMA, model.name)), (limit,)
    )
    columns = [c.name for c in cursor.description or []]
    rows = [tuple(str(v) if v is not None else None for v in row) for row in cursor.fetchall()]
    return pl.DataFrame(rows, schema=dict.fromkeys(columns, pl.String), orient="row")
