"""The Dagster layer loads, validates, and materializes against the real servers."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_load_with_every_resource_bound() -> None:
    from definitions import defs

    dg.Definitions.validate_loadable(defs)
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"feature_store_schema", "warehouse_collections"} <= keys
    assert {"automation", "alert_on_run_failure"} <= {s.name for s in defs.sensors or []}


def test_platform_assets_materialize_in_process(postgres_url: str, mongodb_url: str) -> None:
    from assets.platform import feature_store_schema, warehouse_collections
    from resources import PostgresResource, WarehouseResource

    result = dg.materialize(
        [feature_store_schema, warehouse_collections],
        resources={"postgres": PostgresResource(), "warehouse": WarehouseResource()},
    )
    assert result.success
    schema = result.asset_materializations_for_node("feature_store_schema")[0].metadata
    assert "vector" in schema["extensions"].value  # type: ignore[operator]
    assert schema["server_version"].value.startswith("18")  # type: ignore[union-attr]
    warehouse = result.asset_materializations_for_node("warehouse_collections")[0].metadata
    assert {"documents/articles", "documents/posts", "documents/repositories"} <= set(warehouse)


def test_cli_materialize_records_runs_in_the_instance(twin_home: Path, postgres_url: str) -> None:
    from cli.launch import materialize
    from definitions import defs

    instance = dg.DagsterInstance.ephemeral()
    outcomes = materialize(defs, "group:platform", instance)
    assert [o.success for o in outcomes] == [True]
    assert (
        instance.get_latest_materialization_event(dg.AssetKey("feature_store_schema")) is not None
    )
    with pytest.raises(ValueError, match="matches no asset"):
        materialize(defs, "no_such_asset", instance)


def command_paths() -> list[list[str]]:
    """Every command and group of `twin`, read from the app itself."""
    import click
    import typer

    from cli import app

    paths: list[list[str]] = [[]]

    def walk(command: click.Command, path: list[str]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            paths.append([*path, name])
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


@pytest.mark.parametrize("args", command_paths(), ids=lambda args: " ".join(args) or "twin")
def test_every_command_has_help(args: list[str]) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "twin"), *args, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_plan_puts_every_asset_after_its_upstreams() -> None:
    from cli.launch import plan_segments
    from definitions import defs

    graph = defs.resolve_asset_graph()
    segments = plan_segments(defs, "*")
    order = [key for _, keys in segments for key in keys]
    assert len(order) == len(set(order))
    position = {key: i for i, key in enumerate(order)}
    for key in order:
        for parent in graph.get(key).parent_keys:
            if parent in position:
                assert position[parent] < position[key], f"{parent} must run before {key}"
    kinds = [partitioned for partitioned, _ in segments]
    assert all(a != b for a, b in itertools.pairwise(kinds)), "segments should alternate"


def test_report_lists_materializations_and_checks(twin_home: Path, postgres_url: str) -> None:
    from cli.launch import materialize, write_report
    from definitions import defs

    instance = dg.DagsterInstance.ephemeral()
    outcomes = materialize(defs, "group:platform", instance)
    text = write_report(outcomes, instance, twin_home / "reports" / "test.md").read_text()
    assert "**feature_store_schema**" in text
    assert "server_version: 18" in text
