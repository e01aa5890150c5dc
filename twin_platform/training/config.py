"""Typed training configuration: one `TrainingConfig` per run, built from a named profile.

Profiles:
- `full` (GPU) is the reference recipe (LLM Engineer's Handbook): SFT with LoRA r=32/alpha=32 on all
  linear layers, lr 3e-4, 3 epochs, packed rows of 2048 tokens, effective batch 16 rows, weight decay
  0.01, linear schedule, 10 warmup steps; DPO with beta 0.5, lr 2e-6, 1 epoch, max length 1024.
  Measured departures for speed (benchmarks/results/training_gpu.md, H200): micro-batch 4 x
  accumulation 4 instead of 2 x 8; best-fit packing without padding, read by flex attention with a
  block-diagonal mask (no attention across packed sequences); gradient checkpointing only when the
  activations would not fit the GPU; fused AdamW instead of 8-bit AdamW (a LoRA optimizer state is
  tiny). Liger's fused kernels are an option (`use_liger_kernel`).
- `quick` (CPU) trains the same way for a bounded number of steps on short sequences, with a
  higher learning rate, so the whole graph runs inside `make run` in minutes on two cores.

This module only needs pydantic: the GPU benchmark imports it on a machine without the platform.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Stage = Literal["sft", "dpo"]
Method = Literal["lora", "qlora", "full"]
ProfileName = Literal["quick", "full"]

# Activation memory without gradient checkpointing, in bytes per token, layer and hidden unit (bf16
# LoRA on Llama shapes, measured on an H200: 1B 17.5 GiB and 8B 70 GiB peak at 8,192 tokens).
ACTIVATION_BYTES = 64
# Checkpointing stays off while weights plus activations fit in this share of the GPU's memory.
DEVICE_MEMORY_SHARE = 0.9

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    r: int = Field(default=32, ge=1)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: list(ALL_LINEAR))


class Hyperparameters(BaseModel):
    """What a run trains with; field names follow TRL/transformers so they read the same there."""

    model_config = ConfigDict(extra="forbid")

    method: Method = "lora"
    lora: LoraSettings = Field(default_factory=LoraSettings)
    learning_rate: float = Field(gt=0)
    num_train_epochs: float = Field(default=1.0, gt=0)
    max_steps: int = Field(default=-1, description="> 0 caps the run (wins over epochs).")
    per_device_train_batch_size: int = Field(default=8, ge=1)
    gradient_accumulation_steps: int = Field(default=2, ge=1)
    optim: str = "adamw_torch_fused"
    weight_decay: float = 0.01
    lr_scheduler_type: str = "linear"
    warmup_steps: int = Field(default=10, ge=0)
    max_length: int = Field(default=2048, ge=16)
    packing: bool = Field(
        default=False,
        description="SFT only: best-fit packing without padding (flex attention on a GPU).",
    )
    group_by_length: bool = Field(
        default=True, description="SFT without packing: batches of similar lengths."
    )
    gradient_checkpointing: bool | None = Field(
        default=None,
        description="None: on only when the activations would not fit the GPU's memory.",
    )
    use_liger_kernel: bool = Field(
        default=False, description="Liger's fused Triton kernels (GPU only, liger-kernel)."
    )
    beta: float = Field(default=0.5, gt=0, description="DPO only: strength of the KL penalty.")
    seed: int = 42
    logging_steps: int = Field(default=1, ge=1)
    save_steps: int = Field(
        default=50, ge=1, description="Checkpoint interval: what a resume restarts from."
    )
    max_train_samples: int | None = Field(
        default=None, ge=1, description="Use only the first N rows."
    )


PROFILES: dict[ProfileName, dict[Stage, Hyperparameters]] = {
    "full": {
        "sft": Hyperparameters(
            learning_rate=3e-4,
            num_train_epochs=3,
            max_length=2048,
            packing=True,
            per_device_train_batch_size=4,
            gradient_accumulation_steps=4,
        ),
        "dpo": Hyperparameters(learning_rate=2e-6, num_train_epochs=1, max_length=1024, beta=0.5),
    },
    # Chosen on the sample author on 2 CPU cores (benchmarks/results/quick_profile.md): about two
    # minutes of SFT over half an epoch of its template rows and one of DPO, which together take
    # held-out perplexity from 49 to about 28 and rank every held-out preference pair right.
    "quick": {
        "sft": Hyperparameters(
            lora=LoraSettings(r=16, alpha=32),
            learning_rate=1e-3,
            max_steps=24,
            per_device_train_batch_size=4,
            gradient_accumulation_steps=1,
            optim="adamw_torch",
            gradient_checkpointing=False,
            warmup_steps=2,
            max_length=320,
            save_steps=8,
        ),
        "dpo": Hyperparameters(
            lora=LoraSettings(r=16, alpha=32),
            learning_rate=1e-4,
            max_steps=4,
            per_device_train_batch_size=4,
            gradient_accumulation_steps=1,
            optim="adamw_torch",
            gradient_checkpointing=False,
            warmup_steps=0,
            max_length=256,
            beta=0.1,
            save_steps=2,
        ),
    },
}


def profile(name: ProfileName, stage: Stage, **overrides: Any) -> Hyperparameters:
    """A profile's hyperparameters for `stage`, with `overrides` (None values are ignored) applied."""
    if name not in PROFILES:
        raise ValueError(f"unknown training profile {name!r}: choose one of {sorted(PROFILES)}")
    base = PROFILES[name][stage].model_dump()
    changes = {k: v for k, v in overrides.items() if v is not None}
    if isinstance(changes.get("lora"), dict):
        changes["lora"] = base["lora"] | {k: v for k, v in changes["lora"].items() if v is not None}
    return Hyperparameters.model_validate(base | changes)


class TrainingConfig(BaseModel):
    """One training run: what the Dagster asset writes and `python -m ...sft --config` reads."""

    model_config = ConfigDict(extra="forbid")

    stage: Stage
    base_model: str = Field(description="HF folder or id to start from (the SFT model for DPO).")
    dataset_dir: Path = Field(description="Folder with train.jsonl (and test.jsonl).")
    output_dir: Path = Field(description="Checkpoints, adapter, merged weights and result.json.")
    hyperparameters: Hyperparameters
    report_to: list[str] = Field(default_factory=lambda: ["wandb"])
    run_name: str | None = None
    registry: str | None = Field(
        default=None, description="Registry root to register into; None skips it."
    )
    model_name: str = "twin"
    alias: str | None = Field(
        default="candidate", description="Alias pointed at the registered version; None: none."
    )
    wandb_dir: Path | None = Field(default=None, description="Experiment-tracker files (offline).")
    lineage: dict[str, Any] = Field(
        default_factory=dict, description="Base model, dataset, parents."
    )

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def load(cls, path: Path | str) -> TrainingConfig:
        """Read a JSON or YAML config file."""
        text = Path(path).read_text(encoding="utf-8")
        if str(path).endswith((".yaml", ".yml")):
            import yaml

            return cls.model_validate(yaml.safe_load(text))
        return cls.model_validate(json.loads(text))


@dataclass(frozen=True)
class ModelSize:
    """What a model's training memory depends on."""

    parameters: int
    layers: int
    hidden: int


def needs_checkpointing(
    hp: Hyperparameters, *, stage: Stage, model: ModelSize, device_memory: int | None
) -> bool:
    """Gradient checkpointing recomputes the forward pass (about a third more work): use it only
    when weights plus the activations of the largest micro-batch would not fit the GPU.

    `device_memory` is the GPU's memory in bytes, None on a CPU (where memory is not the limit).
    """
    if hp.gradient_checkpointing is not None:
        return hp.gradient_checkpointing
    if device_memory is None:
        return False
    rows = 2 if stage == "dpo" else 1  # a DPO row is a chosen and a rejected sequence
    tokens = rows * hp.per_device_train_batch_size * hp.max_length
    estimate = 2 * model.parameters + ACTIVATION_BYTES * tokens * model.layers * model.hidden
    return estimate > DEVICE_MEMORY_SHARE * device_memory


def trainer_arguments(
    hp: Hyperparameters,
    *,
    stage: Stage,
    output_dir: Path,
    on_gpu: bool,
    bf16_ok: bool,
    gradient_checkpointing: bool,
) -> dict[str, Any]:
    """Keyword arguments for TRL's SFTConfig/DPOConfig (shared TrainingArguments fields).

    bf16 only where the GPU supports it: TRL turns it on by default and a CPU without bf16 then runs
    4-8x slower. Fused AdamW needs a GPU; the CPU falls back to plain AdamW. Length grouping needs an
    `input_ids` column, which only SFT's tokenized dataset has.
    """
    optim = hp.optim if on_gpu or "fused" not in hp.optim else "adamw_torch"
    grouped = hp.group_by_length and not hp.packing and stage == "sft"
    packing = {}
    if stage == "sft":
        packing = {"packing": hp.packing}
        if hp.packing:
            # One flat row per micro-batch, padded to a fixed length so that the compiled flex
            # attention kernel sees a single shape (best-fit bins are nearly full: little padding).
            packing |= {
                "packing_strategy": "bfd",
                "pad_to_multiple_of": hp.per_device_train_batch_size * hp.max_length,
            }
    return packing | {
        "output_dir": str(output_dir),
        "learning_rate": hp.learning_rate,
        "num_train_epochs": hp.num_train_epochs,
        "max_steps": hp.max_steps,
        "per_device_train_batch_size": hp.per_device_train_batch_size,
        "gradient_accumulation_steps": hp.gradient_accumulation_steps,
        "optim": optim,
        "weight_decay": hp.weight_decay,
        "lr_scheduler_type": hp.lr_scheduler_type,
        "warmup_steps": hp.warmup_steps,
        "max_length": hp.max_length,
        "gradient_checkpointing": gradient_checkpointing,
        "use_liger_kernel": hp.use_liger_kernel and on_gpu,
        "train_sampling_strategy": "group_by_length" if grouped else "random",
        "bf16": on_gpu and bf16_ok,
        "fp16": False,
        # Without a GPU, say so: under `accelerate launch` this makes the processes a gloo (CPU)
        # group; otherwise each would train alone, unaware of the others.
        "use_cpu": not on_gpu,
        "seed": hp.seed,
        "logging_steps": hp.logging_steps,
        "save_strategy": "steps",
        "save_steps": hp.save_steps,
        "save_total_limit": 2,
        "include_num_input_tokens_seen": "non_padding",
    }


def attention_implementation(hp: Hyperparameters, *, on_gpu: bool) -> str | None:
    """The attention kernel a run loads its model with; None keeps the model's default (SDPA).

    Packing puts several sequences in one row. Flex attention turns their boundaries into a
    block-diagonal mask and skips the blocks between sequences, so nothing attends across them;
    SDPA would need a dense mask over the whole row and compute every block.
    """
    return "flex_attention" if hp.packing and on_gpu else None


def plan_run(
    stage: Stage,
    *,
    profile_name: ProfileName,
    overrides: dict[str, Any],
    base_model: str,
    dataset_dir: Path,
    runs_dir: Path,
    registry: str | None,
    model_name: str,
    lineage: dict[str, Any],
    wandb_dir: Path | None = None,
) -> TrainingConfig:
    """A run's config; its output folder is keyed by what determines the result, so a rerun after a
    crash resumes in the same folder and a changed input starts a new one."""
    hp = profile(profile_name, stage, **overrides)
    key_source = json.dumps(
        {
            "stage": stage,
            "base": base_model,
            "data": str(dataset_dir),
            "hp": hp.model_dump(),
            "lineage": lineage,
        },
        sort_keys=True,
        default=str,
    )
    key = hashlib.sha256(key_source.encode()).hexdigest()[:12]
    author = str(lineage.get("author", "all"))
    return TrainingConfig(
        stage=stage,
        base_model=base_model,
        dataset_dir=dataset_dir,
        output_dir=runs_dir / stage / author / key,
        hyperparameters=hp,
        run_name=f"{stage}-{author}-{key}",
        registry=registry,
        model_name=model_name,
        alias="candidate" if stage == "dpo" else None,  # the twin to evaluate is the DPO model
        lineage={"profile": profile_name, **lineage},
        wandb_dir=wandb_dir,
    )
