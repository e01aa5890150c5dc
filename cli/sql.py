"""`twin sql`: the SQL models of dbt_like_sql/, compiled or built outside Dagster."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import console
from twin_platform import servers
from twin_platform.servers.common import ServiceError
from twin_platform.settings import load_settings

app = typer.Typer(help="The SQL models of dbt_like_sql/.", no_args_is_help=True)


def _model(name: str):  # type: ignore[no-untyped-def]
    from twin_platform.storage.sql_models import SqlModelError, load_project

    try:
        project = load_project()
    except SqlModelError as exc:
        raise ServiceError(str(exc)) from exc
    if name not in project.models:
        raise ServiceError(f"no SQL model {name!r}; there are: {', '.join(sorted(project.models))}")
    return project, project.models[name]


@app.command("compile")
def compile_sql(
    model: Annotated[str, typer.Argument(help="Model name (a .sql file of dbt_like_sql/).")],
) -> None:
    """Print the model's SQL with refs and sources resolved, and what it reads."""
    from twin_platform.storage.sql_models import compile_model

    project, found = _model(model)
    print(compile_model(project, found))
    console.print(
        f"[dim]-- {found.materialized}; reads models {list(found.refs)} and tables"
        f" {[f'{s.schema}.{s.table}' for s in found.sources]}[/dim]"
    )


@app.command("run")
def run_sql(
    model: Annotated[str, typer.Argument(help="Model name (a .sql file of dbt_like_sql/).")],
) -> None:
    """Build the model in Postgres and run its tests (the models it reads must exist)."""
    from twin_platform.storage.postgres import connect
    from twin_platform.storage.sql_models import run_model, run_tests

    project, found = _model(model)
    with connect(servers.postgres_uri(load_settings())) as conn:
        rows = run_model(conn, project, found)
        results = run_tests(conn, found)
    console.print(f"{found.table}: {rows} rows ({found.materialized})")
    for result in results:
        mark = "[green]pass[/green]" if result.passed else "[red]FAIL[/red]"
        console.print(f"  {mark} {result.name}: {result.description}", highlight=False)
    if not all(r.passed for r in results):
        raise typer.Exit(1)
