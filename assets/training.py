"""The twin itself: base model -> SFT -> DPO, trained outside Dagster through Pipes, kept in the registry.

`sft_model` and `dpo_model` sit in the `gpu` pool so Dagster runs one GPU job at a time. The trainer
reports its metrics, curves and registered version back; the asset's value is the registry version
(`ModelVersion`), registered under the `candidate` alias (evaluation promotes to `production`).
"""

from collections.abc import Iterator
from enum import StrEnum
from typing import Any

import dagster as dg
from pydantic import Field

from assets.partitions import authors
from resources import SettingsResource
from resources.training import TrainingLauncher
from twin_platform.datasets.artifact import DatasetArtifact
from twin_platform.models.base_model import BaseModelInfo, prepare_base_model
from twin_platform.registry import ModelRegistry, ModelVersion, model_name
from twin_platform.settings import Settings
from twin_platform.training.config import ProfileName, Stage, plan_run
from twin_platform.training.runner import code_version

TRAINING_CODE_VERSION = code_version()


class BaseModelConfig(dg.Config):
    source: str | None = Field(
        default=None,
        description="Hugging Face id or local folder; empty = TWIN_BASE_MODEL, else the bundled SmolLM2-135M-Instruct.",
    )


class Profile(StrEnum):
    quick = "quick"
    full = "full"


class Method(StrEnum):
    lora = "lora"
    qlora = "qlora"
    full = "full"


class TrainingRunConfig(dg.Config):
    """Empty fields take the profile's value; `full` holds the reference recipe (see twin_platform/training/config.py)."""

    profile: Profile | None = Field(
        default=None,
        description="quick (CPU, minutes) or full (GPU, reference recipe); empty = TWIN_TRAINING_PROFILE.",
    )
    method: Method | None = Field(default=None, description="full profile: lora")
    learning_rate: float | None = Field(
        default=None, description="full profile: SFT 3e-4, DPO 2e-6"
    )
    num_train_epochs: float | None = Field(default=None, description="full profile: SFT 3, DPO 1")
    max_steps: int | None = Field(
        default=None, description="> 0 caps the run; quick profile: SFT 24, DPO 4"
    )
    per_device_train_batch_size: int | None = Field(default=None, description="full profile: 8")
    gradient_accumulation_steps: int | None = Field(default=None, description="full profile: 2")
    max_length: int | None = Field(default=None, description="full profile: SFT 2048, DPO 1024")
    lora_r: int | None = Field(default=None, description="full profile: 32")
    lora_alpha: int | None = Field(default=None, description="full profile: 32")
    beta: float | None = Field(default=None, description="DPO only; full profile: 0.5")
    max_train_samples: int | None = Field(default=None, description="Use only the first N rows.")

    def overrides(self) -> dict[str, Any]:
        values = self.model_dump(exclude={"profile", "lora_r", "lora_alpha"})
        values["method"] = self.method.value if self.method else None
        return values | {"lora": {"r": self.lora_r, "alpha": self.lora_alpha}}


@dg.asset(group_name="training", kinds={"huggingface"}, code_version=TRAINING_CODE_VERSION)
def base_model(config: BaseModelConfig, settings: SettingsResource) -> dg.Output[BaseModelInfo]:
    """The base LLM as a local HF folder (the bundled GGUF is converted once, ~35 s)."""
    s = settings.settings
    info = prepare_base_model(config.source or s.base_model, s.base_models_dir)
    return dg.Output(
        info,
        metadata={
            "source": info.source,
            "path": dg.MetadataValue.path(str(info.path)),
            "parameters": info.parameters,
            "architecture": info.architecture,
        },
        data_version=dg.DataVersion(f"{info.source}@{info.parameters}"),
    )


def _train(
    context: dg.AssetExecutionContext,
    stage: Stage,
    config: TrainingRunConfig,
    settings: Settings,
    launcher: TrainingLauncher,
    start_from: str,
    dataset: DatasetArtifact,
    lineage: dict[str, Any],
) -> Iterator[dg.Output[ModelVersion] | dg.AssetCheckResult]:
    profile_name: ProfileName = (
        config.profile.value if config.profile else settings.training_profile
    )  # type: ignore[assignment]
    registry = ModelRegistry.from_settings(settings)
    run_config = plan_run(
        stage,
        profile_name=profile_name,
        overrides=config.overrides(),
        base_model=start_from,
        dataset_dir=dataset.path,
        runs_dir=settings.training_dir,
        registry=settings.model_registry_root,
        model_name=model_name(dataset.author),
        lineage={"author": dataset.author, "dataset": dataset.to_dict(), **lineage},
        wandb_dir=settings.wandb_dir,
    )
    context.log.info(
        "training %s with profile %s in %s", stage, profile_name, run_config.output_dir
    )
    result = launcher.run(context, run_config).get_materialize_result()
    metadata = dict(result.metadata or {})
    version = registry.get(run_config.model_name, int(metadata["model_version"].value))
    yield dg.Output(version, metadata=metadata, data_version=result.data_version)
    metrics = version.manifest["metrics"]
    early, late = metrics.get("early_loss"), metrics.get("late_loss")
    yield dg.AssetCheckResult(
        check_name="loss_decreased",
        severity=dg.AssetCheckSeverity.ERROR if stage == "sft" else dg.AssetCheckSeverity.WARN,
        passed=early is not None and late is not None and late < early,
        metadata={"early_loss": early, "late_loss": late, "first_loss": metrics["first_loss"]},
        description="Training moved the model: the mean loss of the second half of the steps is "
        "below that of the first half.",
    )


def _loss_check(asset: str, blocking: bool) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec("loss_decreased", asset=asset, blocking=blocking)]


@dg.asset(
    group_name="training",
    partitions_def=authors,
    pool="gpu",
    kinds={"pytorch", "wandb"},
    code_version=TRAINING_CODE_VERSION,
    check_specs=_loss_check("sft_model", blocking=True),
)
def sft_model(
    context: dg.AssetExecutionContext,
    config: TrainingRunConfig,
    settings: SettingsResource,
    training: TrainingLauncher,
    base_model: BaseModelInfo,
    instruction_dataset: DatasetArtifact,
) -> Iterator[dg.Output[ModelVersion] | dg.AssetCheckResult]:
    """LoRA (or QLoRA/full) SFT of the base model on the author's instruction dataset (TRL SFTTrainer)."""
    lineage = {"base": base_model.to_dict()}
    yield from _train(
        context,
        "sft",
        config,
        settings.settings,
        training,
        str(base_model.path),
        instruction_dataset,
        lineage,
    )


@dg.asset(
    group_name="training",
    partitions_def=authors,
    pool="gpu",
    kinds={"pytorch", "wandb"},
    code_version=TRAINING_CODE_VERSION,
    # A few quick-profile DPO steps barely move the loss from log 2: warn, do not block.
    check_specs=_loss_check("dpo_model", blocking=False),
)
def dpo_model(
    context: dg.AssetExecutionContext,
    config: TrainingRunConfig,
    settings: SettingsResource,
    training: TrainingLauncher,
    sft_model: ModelVersion,
    preference_dataset: DatasetArtifact,
) -> Iterator[dg.Output[ModelVersion] | dg.AssetCheckResult]:
    """DPO of the SFT model on the author's preference dataset (TRL DPOTrainer, adapter-off reference)."""
    lineage = {"parent": {"name": sft_model.name, "version": sft_model.version, "stage": "sft"}}
    yield from _train(
        context,
        "dpo",
        config,
        settings.settings,
        training,
        str(sft_model.path),
        preference_dataset,
        lineage,
    )
