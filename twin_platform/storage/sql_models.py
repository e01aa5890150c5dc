"""SQL models the dbt way: SELECTs in `dbt_like_sql/`, with refs, sources, materializations and tests.

A model is one `.sql` file: a SELECT that names other models as `{{ ref('model') }}` and tables as
`{{ source('name', 'table') }}`, under a header of comments:

    -- Per author and category: how much writing the twin has.   (the first line: its description)
    -- materialized: view | table | incremental                    (default table)
    -- unique_key: author, day                                      (incremental only)

The template is rendered with Jinja (`ref`, `source`, `this`, `is_incremental()`), then the SQL is
parsed with sqlglot, which finds the tables it reads: those give the dependencies, so a ref that is
never used is not a dependency and a table that is neither a model nor a declared source is an error. Tests live in
`schema.yml` beside the models (not_null, unique, accepted_values, relationships, row_count) and
sources in `sources.yml`. Each build runs in one transaction: readers see the old result or the new.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any, Literal

import jinja2
import psycopg
import sqlglot
import yaml
from psycopg import sql
from sqlglot import exp

from twin_platform.checks import CheckResult
from twin_platform.settings import PROJECT_ROOT

MODELS_DIR = PROJECT_ROOT / "dbt_like_sql"
SCHEMA = "analytics"
Materialization = Literal["view", "table", "incremental"]


class SqlModelError(ValueError):
    """A model that cannot be compiled: unknown ref or source, bad header, SQL that does not parse."""


@dataclass(frozen=True)
class Source:
    name: str
    table: str
    schema: str
    assets: tuple[str, ...]  # the assets that write the table (lineage); none: written elsewhere


@dataclass
class SqlModel:
    name: str
    template: str
    description: str
    materialized: Materialization
    unique_key: tuple[str, ...]
    tests: list[dict[str, Any]] = field(default_factory=list)  # as declared in schema.yml
    refs: tuple[str, ...] = ()  # filled by `compile`
    sources: tuple[Source, ...] = ()

    @property
    def table(self) -> str:
        return f"{SCHEMA}.{self.name}"


@dataclass
class Project:
    models: dict[str, SqlModel]
    sources: dict[tuple[str, str], Source]

    def ordered(self) -> list[SqlModel]:
        """Every model, each after the models it reads."""
        graph = {name: list(m.refs) for name, m in self.models.items()}
        return [self.models[name] for name in TopologicalSorter(graph).static_order()]


def _header(text: str, name: str) -> tuple[str, Materialization, tuple[str, ...]]:
    comments = [line[2:].strip() for line in text.splitlines() if line.startswith("--")]
    settings = dict(
        (key.strip(), value.strip())
        for c in comments
        if ":" in c and c.split(":", 1)[0].strip() in ("materialized", "unique_key")
        for key, value in [c.split(":", 1)]
    )
    description = next(
        (c for c in comments if c.split(":", 1)[0].strip() not in ("materialized", "unique_key")),
        name,
    )
    materialized = settings.get("materialized", "table")
    if materialized not in ("view", "table", "incremental"):
        raise SqlModelError(f"{name}: materialized must be view, table or incremental")
    unique_key = tuple(k.strip() for k in settings.get("unique_key", "").split(",") if k.strip())
    if materialized == "incremental" and not unique_key:
        raise SqlModelError(f"{name}: an incremental model needs a `-- unique_key:` line")
    return description, materialized, unique_key  # type: ignore[return-value]


def load_project(folder: Path = MODELS_DIR) -> Project:
    """Every model of the folder, compiled once so that its refs and sources are known."""
    sources = {
        (group["name"], table["name"]): Source(
            group["name"],
            table["name"],
            group.get("schema", "public"),
            tuple(table.get("assets", [])),
        )
        for group in yaml.safe_load((folder / "sources.yml").read_text())["sources"]
        for table in group["tables"]
    }
    tests = {m["name"]: m for m in yaml.safe_load((folder / "schema.yml").read_text())["models"]}
    models = {}
    for path in sorted(folder.glob("*.sql")):
        text = path.read_text()
        description, materialized, unique_key = _header(text, path.stem)
        models[path.stem] = SqlModel(
            path.stem, text, description, materialized, unique_key, _tests(tests.get(path.stem))
        )
    project = Project(models, sources)
    for model in models.values():
        compile_model(project, model)
    return project


def _tests(declared: dict[str, Any] | None) -> list[dict[str, Any]]:
    """schema.yml's tests of one model, flattened: {"test": kind, "column": c, ...arguments}."""
    if declared is None:
        return []
    found = [_test(t, None) for t in declared.get("tests", [])]
    for column in declared.get("columns", []):
        found += [_test(t, column["name"]) for t in column.get("tests", [])]
    return found


def _test(declared: str | dict[str, Any], column: str | None) -> dict[str, Any]:
    if isinstance(declared, str):
        return {"test": declared, "column": column}
    ((kind, arguments),) = declared.items()
    return {"test": kind, "column": column, **(arguments or {})}


def compile_model(project: Project, model: SqlModel, incremental: bool = False) -> str:
    """The model's SQL with refs and sources resolved; records its refs and sources."""

    def ref(name: str) -> str:
        if name not in project.models:
            raise SqlModelError(f"{model.name}: ref('{name}') names no model")
        return f"{SCHEMA}.{name}"

    def source(group: str, table: str) -> str:
        found = project.sources.get((group, table))
        if found is None:
            raise SqlModelError(f"{model.name}: source('{group}', '{table}') is not in sources.yml")
        return f"{found.schema}.{found.table}"

    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    try:
        compiled = environment.from_string(model.template).render(
            ref=ref, source=source, this=model.table, is_incremental=lambda: incremental
        )
    except jinja2.TemplateError as exc:
        raise SqlModelError(f"{model.name}: {exc}") from exc
    model.refs, model.sources = _dependencies(project, model.name, compiled)
    return compiled.strip().rstrip(";")


def _dependencies(
    project: Project, name: str, compiled: str
) -> tuple[tuple[str, ...], tuple[Source, ...]]:
    """The models and sources the SQL reads, from sqlglot's parse tree (CTE names excluded)."""
    try:
        tree = sqlglot.parse_one(compiled, read="postgres")
    except sqlglot.errors.ParseError as exc:
        raise SqlModelError(f"{name}: the SQL does not parse: {exc}") from exc
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    refs: set[str] = set()
    sources: set[Source] = set()
    by_table = {(s.schema, s.table): s for s in project.sources.values()}
    for table in tree.find_all(exp.Table):
        schema, table_name = table.db, table.name
        if not schema and table_name in ctes:
            continue
        if schema == SCHEMA and table_name in project.models:
            if table_name != name:  # an incremental model reads itself
                refs.add(table_name)
        elif (schema, table_name) in by_table:
            sources.add(by_table[(schema, table_name)])
        else:
            raise SqlModelError(
                f"{name}: reads {table.sql()} without ref() or source(): declare it in sources.yml"
            )
    return tuple(sorted(refs)), tuple(sorted(sources, key=lambda s: (s.name, s.table)))


def run_model(conn: psycopg.Connection, project: Project, model: SqlModel) -> int:
    """Build the model as its materialization says; returns the rows it holds. Autocommit `conn`."""
    target = sql.Identifier(SCHEMA, model.name)
    with conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
        kind = _existing_kind(conn, model.name)
        if model.materialized == "incremental" and kind == "r":
            query = sql.SQL(compile_model(project, model, incremental=True))  # type: ignore[arg-type]
            keys = sql.SQL(", ").join(map(sql.Identifier, model.unique_key))
            conn.execute(sql.SQL("CREATE TEMP TABLE _increment ON COMMIT DROP AS ") + query)
            conn.execute(
                sql.SQL("DELETE FROM {t} WHERE ({k}) IN (SELECT {k} FROM _increment)").format(
                    t=target, k=keys
                )
            )
            conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM _increment").format(target))
        else:
            query = sql.SQL(compile_model(project, model))  # type: ignore[arg-type]
            if kind is not None:
                drop = "DROP VIEW {}" if kind == "v" else "DROP TABLE {}"
                conn.execute(sql.SQL(drop).format(target))
            create = "CREATE VIEW {} AS " if model.materialized == "view" else "CREATE TABLE {} AS "
            conn.execute(sql.SQL(create).format(target) + query)
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(target)).fetchone()
    return int(row[0]) if row else 0


def _existing_kind(conn: psycopg.Connection, name: str) -> str | None:
    """'r' (table), 'v' (view) or None."""
    row = conn.execute(
        "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s",
        (SCHEMA, name),
    ).fetchone()
    return str(row[0]) if row else None


def test_name(test: dict[str, Any]) -> str:
    """The asset check's name: `not_null_author`, `row_count`, ..."""
    return f"{test['test']}_{test['column']}" if test["column"] else str(test["test"])


def run_tests(conn: psycopg.Connection, model: SqlModel) -> list[CheckResult]:
    """Every declared test of the model, each one query counting the rows that break it."""
    return [_run_test(conn, model, test) for test in model.tests]


def _run_test(conn: psycopg.Connection, model: SqlModel, test: dict[str, Any]) -> CheckResult:
    table = sql.Identifier(SCHEMA, model.name)
    column = sql.Identifier(test["column"]) if test["column"] else None
    kind = test["test"]
    if kind == "not_null":
        query = sql.SQL("SELECT count(*) FROM {} WHERE {} IS NULL").format(table, column)
    elif kind == "unique":
        query = sql.SQL(
            "SELECT count(*) FROM (SELECT {c} FROM {t} WHERE {c} IS NOT NULL GROUP BY {c}"
            " HAVING count(*) > 1) duplicated"
        ).format(c=column, t=table)
    elif kind == "accepted_values":
        query = sql.SQL("SELECT count(*) FROM {} WHERE {} <> ALL(%s)").format(table, column)
    elif kind == "relationships":
        other = sql.Identifier(SCHEMA, str(test["to"]))
        query = sql.SQL(
            "SELECT count(*) FROM {t} x WHERE x.{c} IS NOT NULL AND NOT EXISTS"
            " (SELECT 1 FROM {o} y WHERE y.{f} = x.{c})"
        ).format(t=table, c=column, o=other, f=sql.Identifier(str(test["field"])))
    elif kind == "row_count":
        rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()[0]  # type: ignore[index]
        low, high = test.get("min", 0), test.get("max")
        passed = rows >= low and (high is None or rows <= high)
        return CheckResult(
            test_name(test), passed, f"{rows} rows (min {low}, max {high})", {"rows": rows}
        )
    else:
        raise SqlModelError(f"{model.name}: unknown test {kind!r}")
    params = (list(test["values"]),) if kind == "accepted_values" else ()
    failing = conn.execute(query, params).fetchone()[0]  # type: ignore[index]
    where = f"{test['column']}: " if test["column"] else ""
    return CheckResult(
        test_name(test),
        failing == 0,
        f"{where}{failing} rows break {kind}",
        {"failing_rows": failing},
    )


def preview(conn: psycopg.Connection, model: SqlModel, limit: int = 20) -> list[dict[str, Any]]:
    cursor = conn.execute(
        sql.SQL("SELECT * FROM {} LIMIT %s").format(sql.Identifier(SCHEMA, model.name)), (limit,)
    )
    columns = [c.name for c in cursor.description or []]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
