"""`twin models`: training and the model registry."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cli.common import console, op_config, run_selection
from twin_platform.servers.common import ServiceError
from twin_platform.settings import load_settings

app = typer.Typer(help="Training and the model registry.", no_args_is_help=True)
TRAINING_OPS = ["sft_model", "dpo_model"]


@app.command("train")
def train(
    author: Annotated[str, typer.Argument(help="Author key (the partition), e.g. ada-quill.")],
    profile: Annotated[
        str | None, typer.Option(help="quick (CPU) or full (GPU); default TWIN_TRAINING_PROFILE.")
    ] = None,
) -> None:
    """Materialize base_model, sft_model and dpo_model for one author (runs show in the UI)."""
    config = op_config(TRAINING_OPS, profile=profile)
    if not run_selection(load_settings(), "group:training", [author], config):
        raise typer.Exit(1)


@app.command("list")
def list_models(
    name: Annotated[str | None, typer.Argument(help="Model name (default: every model).")] = None,
) -> None:
    """Registered model versions with their aliases, stage, author and final loss."""
    from twin_platform.registry import ModelRegistry

    registry = ModelRegistry.from_settings(load_settings())
    table = Table("name", "version", "aliases", "stage", "author", "dataset", "final loss", "path")
    for model_name in [name] if name else registry.names():
        by_version: dict[int, list[str]] = {}
        for alias, version in registry.aliases(model_name).items():
            by_version.setdefault(version, []).append(alias)
        for v in registry.versions(model_name):
            lineage, metrics = v.manifest.get("lineage", {}), v.manifest.get("metrics", {})
            loss = metrics.get("final_loss")
            table.add_row(
                v.name,
                str(v.version),
                ", ".join(sorted(by_version.get(v.version, []))),
                str(lineage.get("stage", "-")),
                str(lineage.get("author", "-")),
                str(lineage.get("dataset_version", "-")),
                f"{loss:.4f}" if isinstance(loss, float) else "-",
                str(v.path),
            )
    console.print(table)


@app.command("promote")
def promote(
    author: Annotated[str, typer.Argument(help="Author key, e.g. ada-quill.")],
    force: Annotated[
        bool, typer.Option(help="Promote although the gate failed (recorded as forced).")
    ] = False,
) -> None:
    """Promote the author's evaluated candidate to production through the gate (materializes
    production_model with approval given)."""
    config = op_config(["production_model"], approve=True, force=force or None)
    if not run_selection(load_settings(), "production_model", [author], config):
        raise typer.Exit(1)


@app.command("rollback")
def rollback(
    author: Annotated[str, typer.Argument(help="Author key, e.g. ada-quill.")],
) -> None:
    """Point the author's production alias back at the version it held before its last move."""
    from twin_platform.registry import ModelRegistry, RegistryError, model_name

    registry = ModelRegistry.from_settings(load_settings())
    try:
        version = registry.rollback(model_name(author))
    except RegistryError as exc:
        raise ServiceError(str(exc)) from exc
    console.print(f"{version.name}: production is v{version.version} again")
