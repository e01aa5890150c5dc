"""`twin eval`: the evaluation the eval_report asset runs, outside Dagster, printed as a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import console
from twin_platform import servers
from twin_platform.evaluation.run import ModelRef
from twin_platform.registry import CANDIDATE, ModelRegistry, RegistryError
from twin_platform.servers.common import ServiceError
from twin_platform.settings import load_settings


def evaluate_model(
    model: Annotated[
        str,
        typer.Option(
            help="A registry model (twin-AUTHOR, its candidate; twin-AUTHOR:N, version N) or a"
            " Hugging Face folder."
        ),
    ],
    author: Annotated[str, typer.Option(help="Whose held-out documents to evaluate on.")],
    judge: Annotated[
        str | None, typer.Option(help="LLM judge model (default TWIN_EVAL_JUDGE_MODEL).")
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Also write the report here.")] = None,
) -> None:
    """Evaluate a model on an author's held-out documents against the base model (and the
    author's production model, if any), and print the report and the gate's verdicts."""
    from twin_platform.datasets.artifact import latest
    from twin_platform.evaluation.gate import GateMargins, gate
    from twin_platform.evaluation.run import EvalOptions, Judge, evaluate
    from twin_platform.features.embedding import load_embedder
    from twin_platform.llm.factory import open_chat_model
    from twin_platform.llm.options import LLMOptions, is_bundled
    from twin_platform.models.base_model import prepare_base_model
    from twin_platform.rag.pipeline import RagPipeline
    from twin_platform.rag.retriever import open_retriever
    from twin_platform.registry import PRODUCTION, model_name

    settings = load_settings()
    registry = ModelRegistry.from_settings(settings)
    instructions = latest(settings.datasets_dir, "instruction", author)
    if instructions is None:
        raise ServiceError(f"no instruction dataset for {author}: materialize instruction_dataset")
    try:
        refs = _model_refs(registry, model)
    except RegistryError as exc:
        raise ServiceError(str(exc)) from exc
    base = prepare_base_model(settings.base_model, settings.base_models_dir)
    production = registry.resolve(model_name(author), PRODUCTION)
    models = [ModelRef("base", base.source, str(base.path))]
    if production is not None:
        models.append(
            ModelRef("production", f"{production.name}:{production.version}", str(production.path))
        )
    models += refs
    judge_model = judge or settings.eval_judge_model
    judged = (
        Judge(
            open_chat_model(LLMOptions.from_settings(settings, judge_model)),
            is_bundled(judge_model),
        )
        if judge_model
        else None
    )
    retriever, pool = open_retriever(settings, servers.postgres_uri(settings))
    try:
        report = evaluate(
            author,
            instructions,
            latest(settings.datasets_dir, "preference", author),
            models,
            load_embedder(settings.embedding_model, settings.embedding_device),
            RagPipeline(retriever, None, settings),
            EvalOptions(min_heldout_documents=settings.eval_min_heldout_documents),
            judged,
            progress=lambda message: console.print(f"[dim]{message}[/dim]"),
        )
    finally:
        pool.close()
    text = report.to_markdown()
    console.print(text, markup=False, highlight=False)
    for result in gate(report, GateMargins.from_settings(settings), None):
        mark = "[green]pass[/green]" if result.passed else "[red]FAIL[/red]"
        console.print(f"{mark} {result.name}: {result.description}", highlight=False)
    if output:
        output.write_text(text)


def _model_refs(registry: ModelRegistry, spec: str) -> list[ModelRef]:
    """The candidate (and, for a registry DPO model, its SFT parent for the reward accuracy)."""
    if Path(spec).expanduser().is_dir():
        return [ModelRef("candidate", spec, str(Path(spec).expanduser().resolve()))]
    name, _, number = spec.partition(":")
    version = registry.get(name, int(number)) if number else registry.resolve(name, CANDIDATE)
    if version is None:
        raise RegistryError(f"{name} has no candidate version: pass NAME:VERSION or a folder")
    refs = [ModelRef("candidate", f"{version.name}:{version.version}", str(version.path))]
    parent = version.manifest.get("lineage", {}).get("parent")
    if parent:
        sft = registry.get(parent["name"], int(parent["version"]))
        refs.insert(0, ModelRef("sft", f"{sft.name}:{sft.version}", str(sft.path)))
    return refs
