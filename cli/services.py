"""`twin services`: the embedded Postgres+pgvector and MongoDB servers."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Annotated

import typer

from cli.common import console
from twin_platform import servers
from twin_platform.settings import load_settings

app = typer.Typer(help="The embedded Postgres+pgvector and MongoDB servers.", no_args_is_help=True)


def print_status(statuses: list[servers.ServiceStatus], as_json: bool = False) -> None:
    """One block per server; URIs are printed whole (they are meant to be copied), never cut."""
    if as_json:
        print(json.dumps([dataclasses.asdict(s) for s in statuses], indent=2))
        return
    for s in statuses:
        console.print(
            f"[bold]{s.name}[/bold]: {s.state}  {s.detail}", soft_wrap=True, highlight=False
        )
        console.print(f"  {s.uri or '-'}", soft_wrap=True, highlight=False, markup=False)


@app.command("up")
def up() -> None:
    """Start the embedded servers (or check the external ones) and migrate the schema."""
    started = time.perf_counter()
    print_status(servers.up(load_settings()))
    console.print(f"ready in {time.perf_counter() - started:.1f} s")


@app.command("down")
def down() -> None:
    """Stop the embedded servers. Data stays in TWIN_HOME."""
    stopped = servers.down(load_settings())
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Each server's state and connection URI."""
    print_status(servers.status(load_settings()), as_json)
