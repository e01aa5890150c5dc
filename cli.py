"""`twin`: the command line of Twin Platform. Every command has --help."""

from __future__ import annotations

import os
import shutil
import sys
import time
import urllib.request
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from twin_platform import services
from twin_platform.services import process
from twin_platform.services.common import ServiceError
from twin_platform.settings import PROJECT_ROOT, Settings, load_settings

app = typer.Typer(
    help="Twin Platform: build an LLM twin from your own writing.", no_args_is_help=True
)
services_app = typer.Typer(
    help="The embedded Postgres+pgvector and MongoDB servers.", no_args_is_help=True
)
app.add_typer(services_app, name="services")
console = Console()

BIN = Path(sys.executable).parent


def use_dagster_home(settings: Settings) -> Path:
    """Point Dagster at $TWIN_HOME/dagster, with the project's dagster.yaml in it."""
    home = settings.dagster_home
    process.ensure_writable(home)
    template = PROJECT_ROOT / "dagster.yaml"
    target = home / "dagster.yaml"
    if not target.exists() or target.read_bytes() != template.read_bytes():
        shutil.copyfile(template, target)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def print_status(statuses: list[services.ServiceStatus]) -> None:
    table = Table("service", "state", "uri", "detail")
    for s in statuses:
        table.add_row(s.name, s.state, s.uri or "-", s.detail)
    console.print(table)


@services_app.command("up")
def services_up() -> None:
    """Start the embedded servers (or check the external ones) and migrate the schema."""
    started = time.perf_counter()
    statuses = services.up(load_settings())
    print_status(statuses)
    console.print(f"ready in {time.perf_counter() - started:.1f} s")


@services_app.command("down")
def services_down() -> None:
    """Stop the embedded servers. Data stays in TWIN_HOME."""
    stopped = services.down(load_settings())
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@services_app.command("status")
def services_status() -> None:
    """Each server's state and connection URI."""
    print_status(services.status(load_settings()))


def _wait_http(url: str, timeout_s: float, record: process.ProcessRecord, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if not record.is_alive():
                raise ServiceError(
                    f"{record.command[0]} exited: {process.tail(log, 3)} (log: {log})"
                ) from None
            time.sleep(0.5)
    raise ServiceError(f"{url} did not answer within {timeout_s:.0f} s (log: {log})")


def start_ui(settings: Settings, port: int) -> str:
    """Dagster webserver and daemon in the background on 127.0.0.1; idempotent."""
    use_dagster_home(settings)
    services.up(settings)  # so the webserver's first page does not wait for them
    url = f"http://127.0.0.1:{port}"
    run_dir = settings.run_dir
    workspace = str(PROJECT_ROOT / "workspace.yaml")
    with process.exclusive_lock(run_dir / "ui.lock"):
        if process.read_record(run_dir / "daemon.pid") is None:
            process.spawn(
                [str(BIN / "dagster-daemon"), "run", "-w", workspace],
                run_dir / "daemon.pid",
                run_dir / "daemon.log",
            )
        web = process.read_record(run_dir / "webserver.pid")
        if web is None:
            if not process.port_is_free(port):
                raise ServiceError(
                    f"port {port} is taken: pass --port or set TWIN_UI_PORT to a free port."
                )
            web = process.spawn(
                [
                    str(BIN / "dagster-webserver"),
                    "-w",
                    workspace,
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                ],
                run_dir / "webserver.pid",
                run_dir / "webserver.log",
                info={"port": port},
            )
        url = f"http://127.0.0.1:{web.info.get('port', port)}"
        _wait_http(f"{url}/server_info", 120, web, run_dir / "webserver.log")
    return url


@app.command()
def ui(
    port: Annotated[int | None, typer.Option(help="Port (default TWIN_UI_PORT or 3000).")] = None,
) -> None:
    """Start the Dagster web UI and daemon in the background, and print the URL."""
    settings = load_settings()
    url = start_ui(settings, port or settings.ui_port)
    console.print(
        f"Dagster UI: [bold]{url}[/bold]  (logs in {settings.run_dir}; stop with `twin down`)"
    )


def start_api(settings: Settings, host: str, port: int) -> str:
    """The RAG API (`twin serve`) in the background; idempotent. Returns its URL once /health answers."""
    run_dir = settings.run_dir
    process.ensure_writable(run_dir)
    with process.exclusive_lock(run_dir / "api.lock"):
        api = process.read_record(run_dir / "api.pid")
        if api is None:
            if not process.port_is_free(port, host):
                raise ServiceError(
                    f"port {port} is taken: pass --port or set TWIN_API_PORT to a free port."
                )
            api = process.spawn(
                [str(BIN / "twin"), "serve", "--host", host, "--port", str(port)],
                run_dir / "api.pid",
                run_dir / "api.log",
                info={"host": host, "port": port},
            )
        url = f"http://{api.info.get('host', host)}:{api.info.get('port', port)}"
        _wait_http(f"{url}/health", 180, api, run_dir / "api.log")
    return url


@app.command()
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

    uvicorn.run(create_app(settings), host=host, port=port, access_log=access_log, log_level="info")


@app.command()
def materialize(
    selection: Annotated[
        str, typer.Argument(help="Asset selection, e.g. '*', 'group:platform', 'raw_articles+'.")
    ],
    partition: Annotated[
        list[str] | None, typer.Option(help="Only these partitions (authors).")
    ] = None,
) -> None:
    """Materialize assets in this process; runs show up in the UI."""
    settings = load_settings()
    use_dagster_home(settings)
    from jobs.launch import materialize as run_selection

    def report(outcome) -> None:  # type: ignore[no-untyped-def]
        mark = "[green]ok[/green]" if outcome.success else "[red]FAILED[/red]"
        where = f" [{outcome.partition}]" if outcome.partition else ""
        console.print(f"{mark} {', '.join(outcome.assets)}{where}  run {outcome.run_id}")

    try:
        outcomes = run_selection(selection, partition, on_run=report)
    except ValueError as exc:
        raise ServiceError(str(exc)) from exc
    if not all(o.success for o in outcomes):
        raise typer.Exit(1)


def add_author_partitions(names: list[str]) -> None:
    """Authors are Dagster dynamic partitions: add the missing ones to the instance."""
    import dagster as dg

    instance = dg.DagsterInstance.get()
    missing = [n for n in names if not instance.has_dynamic_partition("authors", n)]
    if missing:
        instance.add_dynamic_partitions("authors", missing)


@app.command()
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
    settings = load_settings()
    use_dagster_home(settings)
    from twin_platform.sources import load_sources, parse_source, register_author

    try:
        specs = [parse_source(s) for s in sources or []]
        if not specs and load_sources(settings.authors_file).get(author) is None:
            raise ValueError(f"{author} is a new author: name at least one SOURCE")
        registered = register_author(settings.authors_file, author, specs, display_name)
    except ValueError as exc:
        raise ServiceError(str(exc)) from exc
    add_author_partitions([registered.name])
    console.print(
        f"{registered.name}: {len(registered.sources)} sources in {settings.authors_file}"
    )
    materialize("group:collection", [registered.name])


def ensure_authors(settings: Settings) -> None:
    """`twin run` collects the sample author (data/sample, a few seconds) when none is configured."""
    from twin_platform.sources import load_sources, register_sample_author

    sample = register_sample_author(settings.authors_file)
    if sample is not None:
        console.print(
            f"no author configured: registered the sample author {sample.name} in {settings.authors_file}"
        )
    add_author_partitions([a.name for a in load_sources(settings.authors_file).authors])


@app.command()
def run() -> None:
    """The main job: start the services, materialize the whole graph, start the UI, print where to look."""
    settings = load_settings()
    started = time.perf_counter()
    print_status(services.up(settings))
    use_dagster_home(settings)
    ensure_authors(settings)
    materialize("*", None)
    url = start_ui(settings, settings.ui_port)
    api_url = start_api(settings, settings.api_host, settings.api_port)
    console.print(f"\nDone in {time.perf_counter() - started:.0f} s.")
    console.print(f"  Dagster UI : [bold]{url}[/bold]  (asset graph, lineage, metadata)")
    console.print(
        f"  API + chat : [bold]{api_url}[/bold]  (OpenAI-compatible at /v1, docs at /docs)"
    )
    console.print(f"  Reports    : {settings.reports_dir}")
    console.print("  Stop all   : twin down")


@app.command()
def down() -> None:
    """Stop everything the platform started: UI, daemon, API and the embedded servers."""
    settings = load_settings()
    for name in ("webserver", "daemon", "api"):
        record = process.read_record(settings.run_dir / f"{name}.pid")
        if record is not None:
            process.terminate(record)
            (settings.run_dir / f"{name}.pid").unlink(missing_ok=True)
            console.print(f"stopped {name}")
    services_down()


def main() -> None:
    try:
        app()
    except ServiceError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
