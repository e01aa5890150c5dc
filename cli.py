"""`twin`: the command line of Twin Platform. Every command has --help."""

from __future__ import annotations

import dataclasses
import json
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


def print_status(statuses: list[services.ServiceStatus], as_json: bool = False) -> None:
    """One block per service; URIs are printed whole (they are meant to be copied), never cut."""
    if as_json:
        print(json.dumps([dataclasses.asdict(s) for s in statuses], indent=2))
        return
    for s in statuses:
        console.print(
            f"[bold]{s.name}[/bold]: {s.state}  {s.detail}", soft_wrap=True, highlight=False
        )
        console.print(f"  {s.uri or '-'}", soft_wrap=True, highlight=False, markup=False)


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
def services_status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Each server's state and connection URI."""
    print_status(services.status(load_settings()), as_json)


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
    if not run_selection(selection, partition):
        raise typer.Exit(1)


def run_selection(selection: str, partitions: list[str] | None) -> bool:
    """Materialize, print one line per run, write a Markdown report; True if every run succeeded."""
    settings = load_settings()
    use_dagster_home(settings)
    import dagster as dg

    from jobs.launch import RunOutcome, write_report
    from jobs.launch import materialize as launch

    def report(outcome: RunOutcome) -> None:
        mark = "[green]ok[/green]" if outcome.success else "[red]FAILED[/red]"
        where = f" [{outcome.partition}]" if outcome.partition else ""
        console.print(f"{mark} {', '.join(outcome.assets)}{where}  run {outcome.run_id}")

    instance = dg.DagsterInstance.get()
    try:
        outcomes = launch(selection, partitions, instance=instance, on_run=report)
    except ValueError as exc:
        raise ServiceError(str(exc)) from exc
    path = settings.reports_dir / f"run-{time.strftime('%Y%m%d-%H%M%S')}.md"
    console.print(f"report: {write_report(outcomes, instance, path)}")
    return all(o.success for o in outcomes)


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
    print_collection_counts(registered.name)


def print_collection_counts(author: str) -> None:
    """The counts the raw assets just recorded, as a table (details: the UI's asset pages)."""
    import dagster as dg

    instance = dg.DagsterInstance.get()
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
    succeeded = run_selection("*", None)
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


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for, in plain words.")],
    author: Annotated[str | None, typer.Option(help="Only this author's chunks.")] = None,
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="How many chunks to show.")] = 5,
    lexical: Annotated[
        bool, typer.Option(help="Full-text search instead of vector search.")
    ] = False,
) -> None:
    """Top chunks of the feature store for a query, with scores and source URLs (retrieval, no generation)."""
    from twin_platform.features import store
    from twin_platform.features.embedding import load_embedder
    from twin_platform.storage.postgres import connect

    settings = load_settings()
    url = services.postgres_uri(settings)
    with connect(url, autocommit=True) as conn:
        if lexical:
            hits = store.lexical_search(conn, query, k=k, author=author)
        else:
            embedder = load_embedder(settings.embedding_model, settings.embedding_device)
            vector = embedder.encode([query])[0]
            hits = store.vector_search(
                conn, vector, k=k, author=author, ef_search=settings.hnsw_ef_search
            )
    if not hits:
        console.print("no matching chunks (materialize embedded_chunks first, or check --author)")
        raise typer.Exit(1)
    for rank, hit in enumerate(hits, start=1):
        snippet = " ".join(hit.content.split())
        snippet = snippet[:400] + ("…" if len(snippet) > 400 else "")
        line = f"{rank}. score {hit.score:.3f}  {hit.category}  {hit.author}"
        console.print(line, style="bold", highlight=False, markup=False)
        console.print(f"   {hit.source_url}", soft_wrap=True, highlight=False, markup=False)
        console.print(f"   {snippet}\n", highlight=False, markup=False)


datasets_app = typer.Typer(help="Instruction and preference datasets.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")


@datasets_app.command("build")
def datasets_build(
    author: Annotated[str, typer.Argument(help="Author key (the partition), e.g. ada-quill.")],
    max_extracts: Annotated[int | None, typer.Option(help="Extracts sent to the LLM.")] = None,
    model: Annotated[
        str | None, typer.Option(help="litellm model string (default TWIN_LLM_MODEL).")
    ] = None,
) -> None:
    """Materialize instruction_dataset and preference_dataset for one author (runs show in the UI)."""
    if max_extracts:
        os.environ["TWIN_DATASET_MAX_EXTRACTS"] = str(max_extracts)
    if model:
        os.environ["TWIN_LLM_MODEL"] = model
    materialize("group:datasets", [author])


@datasets_app.command("list")
def datasets_list() -> None:
    """Every dataset version on local disk, newest first, with its counts and generator."""
    from twin_platform.datasets.artifact import DatasetArtifact

    root = load_settings().home / "datasets"
    cards = sorted(root.glob("*/*/*/card.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    table = Table("kind", "author", "version", "train", "test", "generator", "path")
    for card_path in cards:
        artifact = DatasetArtifact.from_folder(card_path.parent)
        card = artifact.card()
        counts = card["counts"]
        table.add_row(
            artifact.kind,
            artifact.author,
            artifact.version,
            str(counts["train"]),
            str(counts["test"]),
            card["generator_model"],
            str(artifact.path),
        )
    console.print(table)


models_app = typer.Typer(help="Training and the model registry.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("train")
def models_train(
    author: Annotated[str, typer.Argument(help="Author key (the partition), e.g. ada-quill.")],
    profile: Annotated[
        str | None, typer.Option(help="quick (CPU) or full (GPU); default TWIN_TRAINING_PROFILE.")
    ] = None,
) -> None:
    """Materialize base_model, sft_model and dpo_model for one author (runs show in the UI)."""
    if profile:
        os.environ["TWIN_TRAINING_PROFILE"] = profile
    materialize("group:training", [author])


@models_app.command("list")
def models_list(
    name: Annotated[str | None, typer.Argument(help="Model name (default: every model).")] = None,
) -> None:
    """Registered model versions with their aliases, stage, author and final loss."""
    from twin_platform.registry import ModelRegistry

    registry = ModelRegistry.from_settings()
    table = Table("name", "version", "aliases", "stage", "author", "final loss", "path")
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
                f"{loss:.4f}" if isinstance(loss, float) else "-",
                str(v.path),
            )
    console.print(table)


@app.command()
def ask(
    prompt: Annotated[str, typer.Argument(help="What to ask the model.")],
    model: Annotated[
        str | None, typer.Option(help="litellm model string (default TWIN_LLM_MODEL).")
    ] = None,
    max_tokens: Annotated[int, typer.Option(help="Largest answer, in tokens.")] = 128,
) -> None:
    """One LLM call through litellm, in the chat format training uses: checks the LLM configuration."""
    from twin_platform.llm.provider import complete
    from twin_platform.prompts import chat_messages

    started = time.perf_counter()
    result = complete(chat_messages(prompt), model=model, max_tokens=max_tokens)
    console.print(result.text)
    console.print(
        f"[dim]{result.model}: {result.prompt_tokens} prompt + {result.completion_tokens} completion tokens, "
        f"{time.perf_counter() - started:.1f} s[/dim]"
    )


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
