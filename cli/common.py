"""What the commands share: the console, the Dagster instance, and running a selection of assets."""

from __future__ import annotations

import time
from typing import Any

import dagster as dg
from rich.console import Console

from cli.launch import RunOutcome, materialize, write_report
from twin_platform.servers.common import ServiceError
from twin_platform.servers.supervisor import prepare_dagster_home
from twin_platform.settings import Settings

console = Console()


def open_instance(settings: Settings) -> dg.DagsterInstance:
    """The Dagster instance under TWIN_HOME/dagster, the one the UI and the daemon read."""
    return dg.DagsterInstance.from_config(str(prepare_dagster_home(settings)))


def run_selection(
    settings: Settings,
    selection: str,
    partitions: list[str] | None = None,
    run_config: dict[str, Any] | None = None,
) -> bool:
    """Materialize in this process, print a line per run and write a Markdown report.

    Returns True when every run succeeded. `run_config` holds op configs by op name.
    """
    from definitions import defs

    def report(outcome: RunOutcome) -> None:
        mark = "[green]ok[/green]" if outcome.success else "[red]FAILED[/red]"
        where = f" [{outcome.partition}]" if outcome.partition else ""
        console.print(f"{mark} {', '.join(outcome.assets)}{where}  run {outcome.run_id}")

    instance = open_instance(settings)
    try:
        outcomes = materialize(defs, selection, instance, partitions, run_config, on_run=report)
    except ValueError as exc:
        raise ServiceError(str(exc)) from exc
    path = settings.reports_dir / f"run-{time.strftime('%Y%m%d-%H%M%S')}.md"
    console.print(f"report: {write_report(outcomes, instance, path)}")
    return all(o.success for o in outcomes)


def op_config(ops: list[str], **values: Any) -> dict[str, Any]:
    """The same config (None values left out) for each of these ops, as `run_selection` takes it."""
    config = {name: value for name, value in values.items() if value is not None}
    return {op: {"config": config} for op in ops} if config else {}
