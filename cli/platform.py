"""The platform as a whole: `twin run`, `ui`, `serve`, `materialize`, `ingest`, `down`."""

from __future__ import annotations

import time
from typing import Annotated

import dagster as dg
import typer
from rich.table import Table

from cli.common import console, open_instance, run_selection
from cli.services import print_status
from twin_platform import servers
from twin_platform.servers.common import ServiceError
from twin_platform.servers.supervisor import start_api, start_ui, stop_all
from twin_platform.settings import Settings, load_settings


def ui(
    port: Annotated[int | None, typer.Option(help="Port (default TWIN_UI_PORT or 3000).")] = None,
) -> None:
    """Start the Dagster web UI and daemon in the background, and print the URL."""
    settings = load_settings()
    servers.up(settings)  # so the webserver's first page does not wait for them
    url = start_ui(settings, port or settings.ui_port)
    console.print(
        f"Dagster UI: [bold]{url}[/bold]  (logs in {settings.run_dir}; stop with `twin down`)"
    )


def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface (default TWIN_API_HOST or 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default TWIN_API_PORT or 8000).")] = None,
    background: Annotated[
        bool, typer.Option(help="Start in the background and return (stop: twin down).")
    ] = False,
    access_log: Annotated[bool, typer.Option(help="Log every request line.")] = False,
) -> None:
    """Serve the RAG API: /rag, /retrieve, /v1/chat/completions, /feedback, the chat page at /, docs at /docs."""
    settings = load_settings()
    host, port = host or settings.api_host, port or settings.api_port
    if background:
        url = start_api(settings, host, port)
        console.print(
            f"API: [bold]{url}[/bold]  (docs {url}/docs; logs in {settings.run_dir / 'api.log'})"
        )
        return
    import uvicorn

    from twin_platform.api.app import create_app

    app = create_app(settings, bind_host=host)  # refuses a network address without keys
    uvicorn.run(app, host=host, port=port, access_log=access_log, log_level="info")


def materialize(
    selection: Annotated[
        str, typer.Argument(help="Asset selection, e.g. '*', 'group:platform', 'raw_articles+'.")
    ],
    partition: Annotated[
        list[str] | None, typer.Option(help="Only these partitions (authors).")
    ] = None,
) -> None:
    """Materialize assets in this process; runs show up in the UI."""
    if not run_selection(load_settings(), selection, partition):
        raise typer.Exit(1)


def ingest(
    author: Annotated[str, typer.Option(help="Author key (the partition), e.g. ada-quill.")],
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            help="URLs to crawl, export zips/folders, local git repositories. None: re-collect known sources."
        ),
    ] = None,
    display_name: Annotated[
        str | None, typer.Option(help="Name shown in prompts, e.g. 'Ada Quill'.")
    ] = None,
) -> None:
    """Register an author's sources in the sources file (TWIN_HOME/authors.yaml) and collect them.

    Materializes raw_articles, raw_posts and raw_repositories for that author; re-running adds nothing.
    """
    from assets.partitions import add_authors
    from twin_platform.collection.sources import load_sources, parse_source, register_author

    settings = load_settings()
    try:
        specs = [parse_source(s) for s in sources or []]
        if not specs and load_sources(settings.authors_file).get(author) is None:
            raise ValueError(f"{author} is a new author: name at least one SOURCE")
        registered = register_author(settings.authors_file, author, specs, display_name)
    except ValueError as exc:
        raise ServiceError(str(exc)) from exc
    add_authors(open_instance(settings), [registered.name])
    console.print(
        f"{registered.name}: {len(registered.sources)} sources in {settings.authors_file}"
    )
    succeeded = run_selection(settings, "group:collection", [registered.name])
    print_collection_counts(settings, registered.name)
    if not succeeded:
        raise typer.Exit(1)


def print_collection_counts(settings: Settings, author: str) -> None:
    """The counts the raw assets just recorded, as a table (details: the UI's asset pages)."""
    instance = open_instance(settings)
    columns = ("new", "updated", "unchanged", "failed", "documents_stored")
    table = Table("asset", *columns)
    for name in ("raw_articles", "raw_posts", "raw_repositories"):
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(name), asset_partitions=[author]), limit=1
        ).records
        if records and records[0].asset_materialization is not None:
            metadata = records[0].asset_materialization.metadata
            table.add_row(
                name, *(str(metadata[c].value) if c in metadata else "-" for c in columns)
            )
    console.print(table)


def register_authors(settings: Settings) -> None:
    """Every author of the sources file gets a partition; with none configured, the sample author
    (data/sample, collected in a few seconds) is registered first."""
    from assets.partitions import add_authors
    from twin_platform.collection.sources import load_sources, register_sample_author

    sample = register_sample_author(settings.authors_file)
    if sample is not None:
        console.print(
            f"no author configured: registered the sample author {sample.name} in {settings.authors_file}"
        )
    names = [a.name for a in load_sources(settings.authors_file).authors]
    add_authors(open_instance(settings), names)


def run() -> None:
    """The main job: start the servers, materialize the whole graph, start the UI and the API."""
    settings = load_settings()
    started = time.perf_counter()
    print_status(servers.up(settings))
    register_authors(settings)
    succeeded = run_selection(settings, "*")
    url = start_ui(settings, settings.ui_port)
    api_url = start_api(settings, settings.api_host, settings.api_port)
    console.print(f"\nDone in {time.perf_counter() - started:.0f} s.")
    console.print(f"  Dagster UI : [bold]{url}[/bold]  (asset graph, lineage, metadata)")
    console.print(
        f"  API + chat : [bold]{api_url}[/bold]  (OpenAI-compatible at /v1, docs at /docs)"
    )
    console.print(f"  Reports    : {settings.reports_dir}")
    console.print("  Stop all   : twin down")
    if not succeeded:
        console.print("[red]Some runs failed[/red]: see the report above and the runs in the UI.")
        raise typer.Exit(1)


def down() -> None:
    """Stop everything the platform started: UI, daemon, API and the embedded servers."""
    settings = load_settings()
    for name in stop_all(settings):
        console.print(f"stopped {name}")
    stopped = servers.down(settings)
    console.print(f"stopped: {', '.join(stopped) or 'no embedded server was running'}")
