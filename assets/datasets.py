"""Training data of the twin, per author: the instruction (SFT) and preference (DPO) datasets.

The work is in `twin_platform.datasets.build`; these assets pick the options, turn the build report
into metadata (every curation step counted, the version, a preview, a length plot) and gate the
result with blocking checks, so training never starts on a broken or leaking dataset.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg
from pydantic import Field

from assets.partitions import authors
from resources import PostgresResource, SettingsResource
from twin_platform.datasets import checks
from twin_platform.datasets.artifact import DatasetArtifact
from twin_platform.datasets.build import (
    BuildOptions,
    BuildReport,
    DatasetTooSmallError,
    build_instruction_dataset,
    build_preference_dataset,
)
from twin_platform.datasets.card import length_plot_markdown, preview_markdown
from twin_platform.datasets.generation import BackendUnavailableError
from twin_platform.settings import Settings, load_settings

CHECKS = {
    "schema_valid": "Every row is a conversation with the expected roles and string contents.",
    "no_empty_fields": "No message is empty.",
    "no_train_test_leakage": "No train row shares an instruction or a word n-gram with the test split.",
    "min_sample_count": "At least TWIN_DATASET_MIN_SAMPLES rows.",
}


class DatasetConfig(dg.Config):
    """Run-time choices; the other options are TWIN_DATASET_* settings."""

    llm_model: str = Field(
        default_factory=lambda: load_settings().llm_model,
        description="twin-local/<name> or a litellm model string; default TWIN_LLM_MODEL.",
    )
    min_samples: int = Field(
        default_factory=lambda: load_settings().dataset_min_samples,
        ge=1,
        description="Fewer rows fail the run; default TWIN_DATASET_MIN_SAMPLES.",
    )


def _options(config: DatasetConfig, settings: Settings, author: str) -> BuildOptions:
    return BuildOptions.from_settings(
        settings, author, llm_model=config.llm_model, min_samples=config.min_samples
    )


def _check_specs(asset: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(name, asset=asset, description=text, blocking=True)
        for name, text in CHECKS.items()
    ]


def _metadata(report: BuildReport, options: BuildOptions) -> dict[str, Any]:
    artifact = report.artifact
    llm = report.generation
    return {
        "version": artifact.version,
        "path": dg.MetadataValue.path(str(artifact.path)),
        "dagster/row_count": report.rows,
        "rows/train": len(report.splits["train"]),
        "rows/test": len(report.splits["test"]),
        "generator_model": options.generation.llm.model,
        "samples_per_minute": report.samples_per_minute,
        "seconds": round(report.seconds, 1),
        **{f"curation/{step}": n for step, n in report.steps.items()},
        **{f"pii/{kind}": n for kind, n in report.pii.items()},
        **{f"llm/{name}": value for name, value in llm.items() if name != "error_samples"},
        "llm/error_samples": dg.MetadataValue.json(llm["error_samples"]),
        "preview": dg.MetadataValue.md(preview_markdown(report.splits["train"])),
        "lengths": dg.MetadataValue.md(length_plot_markdown(report.splits, artifact.kind)),
    } | (  # the cleaned documents it was built from: the automation's growth rule reads it
        {"source_documents": report.steps["documents"]} if "documents" in report.steps else {}
    )


def _check_results(
    artifact: DatasetArtifact, options: BuildOptions
) -> Iterator[dg.AssetCheckResult]:
    outcomes = {
        "schema_valid": checks.check_schema(artifact),
        "no_empty_fields": checks.check_no_empty_fields(artifact),
        "no_train_test_leakage": checks.check_no_leakage(artifact, options.decontamination_ngram),
        "min_sample_count": checks.check_min_samples(artifact, options.min_samples),
    }
    for name, outcome in outcomes.items():
        yield dg.AssetCheckResult(
            check_name=name,
            passed=outcome.passed,
            description=outcome.description,
            metadata=outcome.metadata,
        )


@dg.asset(
    group_name="datasets",
    partitions_def=authors,
    deps=["cleaned_documents"],
    io_manager_key="dataset_io_manager",
    check_specs=_check_specs("instruction_dataset"),
    kinds={"parquet", "litellm"},
)
def instruction_dataset(
    context: dg.AssetExecutionContext,
    config: DatasetConfig,
    settings: SettingsResource,
    postgres: PostgresResource,
) -> Iterator[dg.Output[DatasetArtifact] | dg.AssetCheckResult]:
    """Instruction/answer pairs whose answers are the author's own extracts (LLM back-translation)."""
    s = settings.settings
    options = _options(config, s, context.partition_key)
    try:
        with postgres.connection() as conn:
            report = build_instruction_dataset(conn, options, s.datasets_dir, s.llm_cache_dir)
    except (DatasetTooSmallError, BackendUnavailableError) as exc:
        raise dg.Failure(description=str(exc)) from exc
    context.log.info("instruction dataset %s: %s", report.artifact.version, report.steps)
    yield dg.Output(report.artifact, metadata=_metadata(report, options))
    yield from _check_results(report.artifact, options)


@dg.asset(
    group_name="datasets",
    partitions_def=authors,
    deps=["reviewed_feedback"],  # approved corrections only (assets/feedback.py)
    io_manager_key="dataset_io_manager",
    check_specs=_check_specs("preference_dataset"),
    kinds={"parquet", "litellm"},
)
def preference_dataset(
    context: dg.AssetExecutionContext,
    config: DatasetConfig,
    settings: SettingsResource,
    postgres: PostgresResource,
    instruction_dataset: DatasetArtifact,
) -> Iterator[dg.Output[DatasetArtifact] | dg.AssetCheckResult]:
    """(prompt, chosen = the author's text, rejected = a generated answer), plus user corrections."""
    s = settings.settings
    options = _options(config, s, context.partition_key)
    try:
        with postgres.connection() as conn:
            report = build_preference_dataset(
                conn, instruction_dataset, options, s.datasets_dir, s.llm_cache_dir
            )
    except (DatasetTooSmallError, BackendUnavailableError) as exc:
        raise dg.Failure(description=str(exc)) from exc
    context.log.info("preference dataset %s: %s", report.artifact.version, report.steps)
    yield dg.Output(report.artifact, metadata=_metadata(report, options))
    yield from _check_results(report.artifact, options)
