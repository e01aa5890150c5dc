"""`twin deploy`: what the API serves for each author, and going back to the previous version."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cli.common import console
from twin_platform.servers.common import ServiceError
from twin_platform.servers.supervisor import api_url
from twin_platform.serving.deployments import DeploymentStore
from twin_platform.serving.endpoint import DeployError, reload
from twin_platform.settings import load_settings

app = typer.Typer(help="What the API serves for each author.", no_args_is_help=True)


@app.command("list")
def list_deployments() -> None:
    """Each author's deployed version, when it was deployed, and the one it replaced."""
    table = Table("author", "model", "file", "deployed at", "previous")
    for d in DeploymentStore(load_settings().deployments_dir).all():
        previous = d.previous["version"] if d.previous else "-"
        table.add_row(d.author, d.label, d.gguf or d.hf_path, d.deployed_at, str(previous))
    console.print(table)


@app.command("rollback")
def rollback(author: Annotated[str, typer.Argument(help="Author key, e.g. ada-quill.")]) -> None:
    """Serve the author's previous deployment again (a running API switches at once)."""
    settings = load_settings()
    store = DeploymentStore(settings.deployments_dir)
    current = store.get(author)
    try:
        restored = store.rollback(author)
    except LookupError as exc:
        raise ServiceError(str(exc)) from exc
    url = settings.api_url or api_url(settings)
    if url is not None:
        keys = settings.api_key_list
        try:
            reload(url, keys[0] if keys else None, author)
        except DeployError as exc:
            if current is not None:
                store.restore(current)
            raise ServiceError(str(exc)) from exc
    where = f"the API at {url} serves it" if url else "the API loads it at start"
    console.print(f"{author}: {restored.label} deployed again; {where}")
