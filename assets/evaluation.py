"""Evaluation and promotion, per author: `eval_report` measures the candidate twin on held-out
documents and gates it with blocking checks; `production_model` moves the `production` alias.

The work is `twin_platform.evaluation`: these assets load what it needs, write the report (file,
metadata, Postgres `eval_results`) and turn the gate into asset checks.
"""

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import dagster as dg
from pydantic import Field

from assets.check_results import asset_check_result
from assets.partitions import authors
from resources import EmbeddingModelResource, PostgresResource, SettingsResource
from twin_platform.datasets.artifact import DatasetArtifact
from twin_platform.datasets.freshness import training_documents
from twin_platform.evaluation.gate import GATE_CHECKS, GateMargins, gate
from twin_platform.evaluation.report import EvalReport, models_table, perplexity_plot
from twin_platform.evaluation.results import retrieval_at_promotion, write_results
from twin_platform.evaluation.run import EvalOptions, Judge, ModelRef, evaluate
from twin_platform.fsutil import write_atomic
from twin_platform.llm.factory import open_chat_model
from twin_platform.llm.options import LLMOptions, is_bundled
from twin_platform.models.base_model import BaseModelInfo
from twin_platform.rag.pipeline import RagPipeline
from twin_platform.rag.retriever import open_retriever
from twin_platform.registry import PRODUCTION, ModelRegistry, ModelVersion, model_name
from twin_platform.settings import Settings, load_settings

APPROVAL_TAG = "twin/approved"


class EvalConfig(dg.Config):
    style_prompts: int = Field(default=8, ge=1, description="Held-out prompts answered for style.")
    rag_prompts: int = Field(default=4, ge=0, description="Held-out prompts answered with RAG.")
    max_new_tokens: int = Field(default=64, ge=8, description="Length of each generated answer.")
    judge_model: str = Field(
        default_factory=lambda: load_settings().eval_judge_model or "",
        description="LLM judge; empty = none. Default TWIN_EVAL_JUDGE_MODEL.",
    )


def _judge(settings: Settings, model: str) -> Judge | None:
    if not model:
        return None
    options = LLMOptions.from_settings(settings, model)
    if model == settings.eval_judge_model and settings.eval_judge_api_base:
        key = settings.eval_judge_api_key
        options = replace(
            options,
            api_base=settings.eval_judge_api_base,
            api_key=key.get_secret_value() if key else None,
        )
    return Judge(open_chat_model(options), tiny=is_bundled(model))


def _models(
    registry: ModelRegistry, author: str, base: BaseModelInfo, sft: ModelVersion, dpo: ModelVersion
) -> list[ModelRef]:
    refs = [ModelRef("base", base.source, str(base.path))]
    production = registry.resolve(model_name(author), PRODUCTION)
    if production is not None and production.version != dpo.version:
        refs.append(
            ModelRef("production", f"{production.name}:{production.version}", str(production.path))
        )
    refs.append(ModelRef("sft", f"{sft.name}:{sft.version}", str(sft.path)))
    refs.append(ModelRef("candidate", f"{dpo.name}:{dpo.version}", str(dpo.path)))
    return refs


def _gate_results(report: EvalReport, settings: Settings, conn: Any) -> list[Any]:
    registry = ModelRegistry.from_settings(settings)
    production = registry.resolve(model_name(report.author), PRODUCTION)
    promoted = (
        retrieval_at_promotion(conn, report.author, f"{production.name}:{production.version}")
        if production is not None
        else None
    )
    return gate(report, GateMargins.from_settings(settings), promoted)


@dg.asset(
    group_name="evaluation",
    partitions_def=authors,
    pool="gpu",
    kinds={"pytorch", "deepeval", "postgres"},
    check_specs=[
        dg.AssetCheckSpec(name, asset="eval_report", description=text, blocking=True)
        for name, text in GATE_CHECKS.items()
    ],
)
def eval_report(
    context: dg.AssetExecutionContext,
    config: EvalConfig,
    settings: SettingsResource,
    postgres: PostgresResource,
    embedding_model: EmbeddingModelResource,
    base_model: BaseModelInfo,
    sft_model: ModelVersion,
    dpo_model: ModelVersion,
    instruction_dataset: DatasetArtifact,
    preference_dataset: DatasetArtifact,
) -> Iterator[dg.Output[EvalReport] | dg.AssetCheckResult]:
    """The candidate (DPO) against base, SFT and production on held-out documents: perplexity, DPO
    reward accuracy, style similarity, retrieval, citations, speed, and an LLM judge if configured."""
    s = settings.settings
    author = context.partition_key
    registry = ModelRegistry.from_settings(s)
    retriever, pool = open_retriever(s, postgres.uri)
    try:
        report = evaluate(
            author,
            instruction_dataset,
            preference_dataset,
            _models(registry, author, base_model, sft_model, dpo_model),
            embedding_model.load(),
            RagPipeline(retriever, None, s),
            EvalOptions(
                max_new_tokens=config.max_new_tokens,
                style_prompts=config.style_prompts,
                rag_prompts=config.rag_prompts,
                min_heldout_documents=s.eval_min_heldout_documents,
                beta=dpo_model.manifest["config"]["hyperparameters"]["beta"],
            ),
            _judge(s, config.judge_model),
            progress=context.log.info,
        )
    finally:
        pool.close()
    path = s.reports_dir / "eval" / author / f"{dpo_model.name}-v{dpo_model.version}.md"
    write_atomic(path, report.to_markdown())
    with postgres.connection() as conn:
        written = write_results(conn, report, context.run_id)
        checks = _gate_results(report, s, conn)
    yield dg.Output(report, metadata=_metadata(report, path, written))
    for result in checks:
        yield asset_check_result(result)


def _metadata(report: EvalReport, path: Any, rows: int) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "candidate": report.candidate,
        "heldout_documents": report.heldout_documents,
        "heldout_rows": report.heldout_rows,
        "models": dg.MetadataValue.md(models_table(report)),
        "report": dg.MetadataValue.md(report.to_markdown()),
        "report_file": dg.MetadataValue.path(str(path)),
        "eval_results_rows": rows,
        "seconds": round(report.seconds, 1),
    }
    if report.models:
        metadata["plot"] = dg.MetadataValue.md(perplexity_plot(report))
    for role, metric, value in report.metric_rows():
        metadata[f"{role}/{metric}"] = round(value, 4)
    return metadata


class PromotionConfig(dg.Config):
    approve: bool = Field(
        default=False, description="A person approves this promotion (when approval is required)."
    )
    force: bool = Field(
        default=False, description="Promote although the gate failed; recorded with the promotion."
    )


@dg.asset(
    group_name="evaluation",
    partitions_def=authors,
    kinds={"huggingface"},
)
def production_model(
    context: dg.AssetExecutionContext,
    config: PromotionConfig,
    settings: SettingsResource,
    postgres: PostgresResource,
    eval_report: EvalReport,
    dpo_model: ModelVersion,
) -> dg.Output[ModelVersion]:
    """The author's served twin: the evaluated candidate, promoted only through the gate (and a
    person's approval when TWIN_PROMOTION_REQUIRES_APPROVAL is set)."""
    s = settings.settings
    with postgres.connection() as conn:  # again: a launch of this asset alone must pass it too
        failed = [r for r in _gate_results(eval_report, s, conn) if not r.passed]
    if failed and not config.force:
        raise dg.Failure(
            description=f"{dpo_model.name} v{dpo_model.version} did not pass the gate; production"
            " is unchanged. Failed: " + "; ".join(f"{r.name}: {r.description}" for r in failed),
        )
    approved = config.approve or context.run.tags.get(APPROVAL_TAG) == "true"
    if s.promotion_requires_approval and not approved:
        raise dg.Failure(
            description=f"{dpo_model.name} v{dpo_model.version} passed the gate and awaits"
            f" approval: launch production_model with config approve=true (or the run tag"
            f" {APPROVAL_TAG}=true); production is unchanged.",
        )
    registry = ModelRegistry.from_settings(s)
    previous = registry.resolve(dpo_model.name, PRODUCTION)
    reason = "forced past a failed gate" if failed else "passed the gate"
    version = registry.set_alias(
        dpo_model.name, PRODUCTION, dpo_model.version, reason=reason, forced=bool(failed)
    )
    context.log.info(
        "%s production: v%s -> v%s (%s)",
        version.name,
        previous and previous.version,
        version.version,
        reason,
    )
    return dg.Output(
        version,
        metadata={
            "model": version.name,
            "version": version.version,
            "previous_version": previous.version if previous else None,
            "forced": bool(failed),
            "failed_checks": dg.MetadataValue.json([r.name for r in failed]),
            "approved": approved,
            "source_documents": training_documents(registry, version),
            "path": dg.MetadataValue.path(str(version.path)),
        },
        data_version=dg.DataVersion(f"{version.name}-v{version.version}"),
    )
