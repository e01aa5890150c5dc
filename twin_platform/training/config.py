"""Typed training configuration: one `TrainingConfig` per run, built from a named profile.

Profiles:
- `full` (GPU) is the reference recipe (LLM Engineer's Handbook): SFT with LoRA r=32/alpha=32 on all
  linear layers, lr 3e-4, 3 epochs, batch 2 x 8, weight decay 0.01, linear schedule, 10 warmup steps,
  max length 2048; DPO with beta 0.5, lr 2e-6, 1 epoch, max length 1024. Two measured departures
  (benchmarks/results/training_gpu.md): length-grouped batches instead of packing (no padding waste
  and no cross-sequence attention, while PyTorch's flash SDPA kernel stays usable) and fused AdamW
  instead of 8-bit AdamW (a LoRA optimizer state is well under 1 GB, so 8 bits saves nothing).
- `quick` (CPU) trains the same way for a bounded number of steps on short sequences, so the whole
  graph runs inside `make run` in minutes on two cores.

This module only needs pydantic: the GPU benchmark imports it on a machine without the platform.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Stage = Literal["sft", "dpo"]
Method = Literal["lora", "qlora", "full"]
ProfileName = Literal["quick", "full"]

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
    per_device_train_batch_size: int = Field(default=2, ge=1)
    gradient_accumulation_steps: int = Field(default=8, ge=1)
    optim: str = "adamw_torch_fused"
    weight_decay: float = 0.01
    lr_scheduler_type: str = "linear"
    warmup_steps: int = Field(default=10, ge=0)
    max_length: int = Field(default=2048, ge=16)
    packing: bool = False
    group_by_length: bool = True
    gradient_checkpointing: bool = False
    beta: float = Field(default=0.5, gt=0, description="DPO only: strength of the KL penalty.")
    seed: int = 42
    logging_steps: int = Field(default=1, ge=1)
    save_steps: int = Field(default=50, ge=1, description="Checkpoint interval: what a resume restarts from.")
    max_train_samples: int | None = Field(default=None, ge=1, description="Use only the first N rows.")


PROFILES: dict[ProfileName, dict[Stage, Hyperparameters]] = {
    "full": {
        "sft": Hyperparameters(learning_rate=3e-4, num_train_epochs=3, max_length=2048),
        "dpo": Hyperparameters(learning_rate=2e-6, num_train_epochs=1, max_length=1024, beta=0.5),
    },
    "quick": {
        "sft": Hyperparameters(
            lora=LoraSettings(r=8, alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
            learning_rate=2e-4,
            max_steps=8,
            per_device_train_batch_size=2,
            gradient_accumulation_steps=1,
            optim="adamw_torch",
            warmup_steps=1,
            max_length=512,
            save_steps=4,
            max_train_samples=64,
        ),
        "dpo": Hyperparameters(
            lora=LoraSettings(r=8, alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
            learning_rate=5e-5,
            max_steps=3,
            per_device_train_batch_size=2,
            gradient_accumulation_steps=1,
            optim="adamw_torch",
            warmup_steps=0,
            max_length=512,
            beta=0.5,
            save_steps=3,
            max_train_samples=32,
        ),
    },
}


def profile(name: ProfileName, stage: Stage, **overrides: Any) -> Hyperparameters:
    """A profile's hyperparameters for `stage`, with `overrides` (None values are ignored) applied."""
    if name not in PROFILES:
        raise ValueError(f"unknown training profile {name!r}: choose one of {sorted(PROFILES)}")
    base = PROFILES[name][stage].model_dump()
    changes = {k: v for k, v in overrides.items() if v is not None}
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
    registry: str | None = Field(default=None, description="Registry root to register into; None skips it.")
    model_name: str = "twin"
    alias: str | None = "candidate"
    lineage: dict[str, Any] = Field(default_factory=dict, description="Base model, dataset, parents.")

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


def trainer_arguments(
    hp: Hyperparameters, *, stage: Stage, output_dir: Path, on_gpu: bool, bf16_ok: bool
) -> dict[str, Any]:
    """Keyword arguments for TRL's SFTConfig/DPOConfig (shared TrainingArguments fields).

    bf16 only where the GPU supports it: TRL turns it on by default and a CPU without bf16 then runs
    4-8x slower. Fused AdamW needs a GPU; the CPU falls back to plain AdamW. Length grouping needs an
    `input_ids` column, which only SFT's tokenized dataset has.
    """
    optim = hp.optim if on_gpu or "fused" not in hp.optim else "adamw_torch"
    grouped = hp.group_by_length and not hp.packing and stage == "sft"
    return {
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
        "gradient_checkpointing": hp.gradient_checkpointing,
        "train_sampling_strategy": "group_by_length" if grouped else "random",
        "bf16": on_gpu and bf16_ok,
        "fp16": False,
        "seed": hp.seed,
        "logging_steps": hp.logging_steps,
        "save_strategy": "steps",
        "save_steps": hp.save_steps,
        "save_total_limit": 2,
        "include_num_input_tokens_seen": "non_padding",
    }
