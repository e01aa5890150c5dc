"""The author's data: `twin search`, `twin datasets build|list`, `twin ask`."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from cli.common import console, op_config, run_selection
from twin_platform import servers
from twin_platform.settings import load_settings

datasets_app = typer.Typer(help="Instruction and preference datasets.", no_args_is_help=True)
DATASET_OPS = ["instruction_dataset", "preference_dataset"]


def search(
    query: Annotated[str, typer.Argument(help="What to look for, in plain words.")],
    author: Annotated[str | None, typer.Option(help="Only this author's chunks.")] = None,
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="How many chunks to show.")] = 5,
) -> None:
    """The chunks the API's retrieval returns for a query (`POST /retrieve`), with scores and URLs."""
    from twin_platform.monitoring import Trace
    from twin_platform.rag.pipeline import RagPipeline
    from twin_platform.rag.retriever import open_retriever

    settings = load_settings()
    retriever, pool = open_retriever(settings, servers.postgres_uri(settings))
    try:
        pipeline = RagPipeline(retriever, None, settings)
        retrieval = pipeline.retrieve(query, Trace(route="cli", query=query), author=author, k=k)
    finally:
        pool.close()
    if not retrieval.chunks:
        console.print("no matching chunks (materialize embedded_chunks first, or check --author)")
        raise typer.Exit(1)
    for rank, chunk in enumerate(retrieval.chunks, start=1):
        snippet = " ".join(chunk.content.split())
        snippet = snippet[:400] + ("…" if len(snippet) > 400 else "")
        line = (
            f"{rank}. score {chunk.score:.3f}  {chunk.category}  {chunk.author}  {chunk.chunk_id}"
        )
        console.print(line, style="bold", highlight=False, markup=False)
        console.print(f"   {chunk.source_url}", soft_wrap=True, highlight=False, markup=False)
        console.print(f"   {snippet}\n", highlight=False, markup=False)


@datasets_app.command("build")
def datasets_build(
    author: Annotated[str, typer.Argument(help="Author key (the partition), e.g. ada-quill.")],
    model: Annotated[
        str | None, typer.Option(help="litellm model string (default TWIN_LLM_MODEL).")
    ] = None,
) -> None:
    """Materialize instruction_dataset and preference_dataset for one author (runs show in the UI)."""
    config = op_config(DATASET_OPS, llm_model=model)
    if not run_selection(load_settings(), "group:datasets", [author], config):
        raise typer.Exit(1)


@datasets_app.command("list")
def datasets_list() -> None:
    """Every dataset version on local disk, newest first, with its counts and generator."""
    from twin_platform.datasets.artifact import DatasetArtifact

    root = load_settings().datasets_dir
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


def ask(
    prompt: Annotated[str, typer.Argument(help="What to ask the model.")],
    model: Annotated[
        str | None,
        typer.Option(help="twin-local/<name> or a litellm model string (default TWIN_LLM_MODEL)."),
    ] = None,
    max_tokens: Annotated[int, typer.Option(help="Largest answer, in tokens.")] = 128,
) -> None:
    """One LLM call with the configured model, in the chat format training uses: checks the LLM
    configuration the datasets use."""
    from twin_platform.llm.factory import open_chat_model
    from twin_platform.llm.options import LLMOptions
    from twin_platform.prompts import chat_messages

    options = LLMOptions.from_settings(load_settings(), model)
    started = time.perf_counter()
    result = open_chat_model(options).chat(
        chat_messages(prompt), max_tokens=max_tokens, temperature=0.7
    )
    console.print(result.text)
    console.print(
        f"[dim]{options.model}: {result.prompt_tokens} prompt + {result.completion_tokens} completion tokens, "
        f"{time.perf_counter() - started:.1f} s[/dim]"
    )
