"""`twin`: the command line of Twin Platform. Every command has --help.

Commands are thin: they read the settings, then start servers, materialize assets in this process
(the runs show in the UI) or call the library, and print what happened.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from cli import data, deploy, evaluation, feedback, models, platform, services, sql
from twin_platform.servers.common import ServiceError
from twin_platform.servers.supervisor import use_process_env

app = typer.Typer(
    help="Twin Platform: build an LLM twin from your own writing.", no_args_is_help=True
)
app.add_typer(services.app, name="services")
app.add_typer(data.datasets_app, name="datasets")
app.add_typer(models.app, name="models")
app.add_typer(sql.app, name="sql")
app.add_typer(deploy.app, name="deploy")
app.add_typer(feedback.app, name="feedback")
for command in (
    platform.run,
    platform.ui,
    platform.serve,
    platform.materialize,
    platform.ingest,
    platform.down,
    data.search,
    data.ask,
):
    app.command()(command)
app.command("eval")(evaluation.evaluate_model)


def main() -> None:
    use_process_env()
    try:
        app()
    except ServiceError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
        sys.exit(1)
