"""What SFT and DPO share: load, train with resume, merge, save, register, report.

`sft.py` and `dpo.py` only say how to build their TRL trainer; everything else about a run is here,
so both entrypoints behave the same by hand, in a test, under `accelerate launch` and under Pipes.

Output folder of a run::

    checkpoints/checkpoint-N/   what an interrupted run resumes from
    adapter/                    the LoRA adapter (absent for full fine-tuning)
    merged/                     base + adapter merged: an HF folder transformers and the API load
    result.json                 metrics, lineage and the registered version; present = run complete
    .lock                       held by the run's trainer (see `recovery.py`)

Checkpoints are taken every `save_steps`; a rerun of the same config resumes from the newest
complete one (`recovery.last_complete_checkpoint`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from twin_platform.fsutil import publishing, write_atomic
from twin_platform.reporting import key_value_table
from twin_platform.training.config import (
    Hyperparameters,
    ModelSize,
    TrainingConfig,
    attention_implementation,
    needs_checkpointing,
)
from twin_platform.training.data import dataset_version, load_dataset
from twin_platform.training.recovery import (
    PARENT_PID_ENV,
    exit_with,
    last_complete_checkpoint,
    run_lock,
)
from twin_platform.training.reporting import Reporter, curves_markdown, is_main_process, md

TRAINING_DIR = Path(__file__).resolve().parent
RESULT_FILE = "result.json"
STAGED_DIR = ".weights-staging"
TrainerFactory = Callable[..., Any]


class TrainingError(RuntimeError):
    """A run that cannot go on, with what to change."""


@dataclass
class TrainingResult:
    output_dir: Path
    merged_dir: Path
    adapter_dir: Path | None
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    model_name: str | None = None
    model_version: int | None = None
    log_history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)

    @classmethod
    def load(cls, path: Path) -> TrainingResult:
        data = json.loads(path.read_text())
        data.pop("config", None)
        for key in ("output_dir", "merged_dir", "adapter_dir"):
            data[key] = Path(data[key]) if data[key] else None
        return cls(**data)


def code_version() -> str:
    """Hash of the training code (and the git commit when there is one): a new version retrains."""
    digest = hashlib.sha256()
    for path in sorted(TRAINING_DIR.glob("*.py")):
        digest.update(path.read_bytes())
    short = digest.hexdigest()[:12]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=TRAINING_DIR,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{short}+git.{commit}" if commit else short


def oom_message(hp: Hyperparameters, stage: str) -> str:
    smaller = max(1, hp.per_device_train_batch_size // 2)
    tips = [
        f"lower per_device_train_batch_size to {smaller} and raise gradient_accumulation_steps to "
        f"{hp.gradient_accumulation_steps * hp.per_device_train_batch_size // smaller} (same effective batch)",
        f"lower max_length (now {hp.max_length})",
    ]
    if not hp.gradient_checkpointing:
        tips.append("turn on gradient_checkpointing")
    if hp.method != "qlora":
        tips.append("use method='qlora' (4-bit base weights, GPU only)")
    return f"{stage.upper()} ran out of memory: " + "; or ".join(tips) + "."


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError | MemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def start_wandb(config: TrainingConfig) -> None:
    """Open the run's experiment-tracker run before TRL does, so its settings come from the config
    (offline under TWIN_HOME/wandb unless WANDB_API_KEY is set); TRL then logs into this run."""
    if "wandb" not in config.report_to or not is_main_process():
        return
    import wandb

    mode = os.environ.get("WANDB_MODE") or (
        "online" if os.environ.get("WANDB_API_KEY") else "offline"
    )
    if config.wandb_dir is not None:
        config.wandb_dir.mkdir(parents=True, exist_ok=True)
    wandb.init(
        project=os.environ.get("WANDB_PROJECT", "twin-platform"),
        name=config.run_name,
        dir=str(config.wandb_dir) if config.wandb_dir else None,
        mode=mode,  # type: ignore[arg-type]
        config=json.loads(config.to_json()),
        settings=wandb.Settings(silent=True),
    )


def load_model(config: TrainingConfig, on_gpu: bool, bf16_ok: bool):  # type: ignore[no-untyped-def]
    """Tokenizer (with the chat template the API serves with) and model, quantized for QLoRA."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hp = config.hyperparameters
    tokenizer = AutoTokenizer.from_pretrained(config.base_model)
    if tokenizer.chat_template is None:
        raise TrainingError(
            f"{config.base_model} has no chat template; the platform trains and serves with it"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.bfloat16 if on_gpu and bf16_ok else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype}
    if attention := attention_implementation(hp, on_gpu=on_gpu):
        kwargs["attn_implementation"] = attention
    if hp.method == "qlora":
        if not on_gpu:
            raise TrainingError(
                "method='qlora' needs a CUDA GPU (bitsandbytes 4-bit); use 'lora' on CPU"
            )
        import importlib.util

        from transformers import BitsAndBytesConfig

        if importlib.util.find_spec("bitsandbytes") is None:
            raise TrainingError(
                "method='qlora' needs bitsandbytes: pip install 'twin-platform[gpu]'"
            )
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    model = AutoModelForCausalLM.from_pretrained(config.base_model, **kwargs)
    if hp.method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=hp.gradient_checkpointing
        )
    return model, tokenizer


def peft_config(hp: Hyperparameters):  # type: ignore[no-untyped-def]
    if hp.method == "full":
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=hp.lora.r,
        lora_alpha=hp.lora.alpha,
        lora_dropout=hp.lora.dropout,
        target_modules=hp.lora.target_modules,
        task_type="CAUSAL_LM",
    )


def run(
    config: TrainingConfig,
    make_trainer: TrainerFactory,
    reporter: Reporter | None = None,
    callbacks: Sequence[Any] = (),
) -> TrainingResult:
    """Train (resuming from the last checkpoint), merge, save, register; a finished run is returned as is."""
    reporter = reporter or Reporter()
    with run_lock(Path(config.output_dir), reporter, main_process=is_main_process()):
        return _run(config, make_trainer, reporter, callbacks)


def _run(
    config: TrainingConfig,
    make_trainer: TrainerFactory,
    reporter: Reporter,
    callbacks: Sequence[Any],
) -> TrainingResult:
    import torch

    hp = config.hyperparameters
    out = Path(config.output_dir)
    result_file = out / RESULT_FILE
    if result_file.is_file() and json.loads(result_file.read_text()).get("config") == json.loads(
        config.to_json()
    ):
        reporter.info(f"{config.stage}: already trained with this exact config, reusing {out}")
        finished = TrainingResult.load(result_file)
        reporter.materialized(materialization_metadata(finished, config), _data_version(finished))
        return finished

    dataset = load_dataset(
        config.dataset_dir, config.stage, hp.max_train_samples
    )  # fails before the model loads
    on_gpu = torch.cuda.is_available()
    bf16_ok = on_gpu and torch.cuda.is_bf16_supported()
    if not on_gpu and os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        reporter.info("FSDP needs GPUs: on CPU accelerate runs the processes as DDP (gloo)")
    start_wandb(config)
    model, tokenizer = load_model(config, on_gpu, bf16_ok)
    checkpointing = needs_checkpointing(
        hp,
        stage=config.stage,
        model=ModelSize(
            parameters=model.num_parameters(),
            layers=model.config.num_hidden_layers,
            hidden=model.config.hidden_size,
        ),
        device_memory=torch.cuda.get_device_properties(0).total_memory if on_gpu else None,
    )
    checkpoints = out / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    last = last_complete_checkpoint(checkpoints, clean=is_main_process())
    reporter.info(
        f"{config.stage}: {len(dataset)} rows, method {hp.method}, "
        f"{'GPU bf16' if bf16_ok else 'GPU' if on_gpu else 'CPU fp32'}, "
        + (f"resuming from {last.name}" if last else "starting fresh")
    )
    trainer = make_trainer(
        model=model,
        tokenizer=tokenizer,
        dataset=dataset,
        peft_config=peft_config(hp),
        config=config,
        on_gpu=on_gpu,
        bf16_ok=bf16_ok,
        gradient_checkpointing=checkpointing,
        output_dir=checkpoints,
        callbacks=[progress_callback(reporter), *callbacks],
    )
    started = time.perf_counter()
    try:
        train_output = trainer.train(resume_from_checkpoint=str(last) if last else None)
    except Exception as exc:
        if _is_oom(exc):
            message = oom_message(hp, config.stage)
            reporter.error(message)
            raise TrainingError(message) from exc
        raise
    finally:
        _finish_wandb()
    elapsed = time.perf_counter() - started

    staged = stage_weights(trainer, out)  # every process: FSDP gathers the shards here
    if not trainer.is_world_process_zero():
        return TrainingResult(out, out / "merged", None, {}, {})
    adapter_dir, merged_dir = save(trainer, tokenizer, config, out, staged)
    history = list(trainer.state.log_history)
    losses = [e["loss"] for e in history if "loss" in e]
    metrics = {
        "steps": trainer.state.global_step,
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        # Means over the first and second half of the logged steps: single steps see different
        # batches, so one step against another is mostly noise on short runs.
        "early_loss": _mean(losses[: len(losses) // 2]),
        "late_loss": _mean(losses[len(losses) // 2 :]),
        "train_loss": train_output.training_loss,
        "train_runtime_s": round(elapsed, 1),
        "tokens_seen": int(trainer.state.num_input_tokens_seen),
        "resumed_from": last.name if last else None,
        "device": "cuda" if on_gpu else "cpu",
    }
    lineage = {
        "stage": config.stage,
        "base_model": config.base_model,
        "dataset_dir": str(config.dataset_dir),
        "dataset_version": dataset_version(config.dataset_dir),
        "code_version": code_version(),
        **config.lineage,
    }
    result = TrainingResult(out, merged_dir, adapter_dir, metrics, lineage, log_history=history)
    if config.registry:
        from twin_platform.registry import ModelRegistry

        registry = ModelRegistry(config.registry)
        manifest = {"lineage": lineage, "metrics": metrics, "config": json.loads(config.to_json())}
        version = registry.register(merged_dir, name=config.model_name, manifest=manifest)
        if config.alias:
            registry.set_alias(config.model_name, config.alias, version.version)
        result.model_name, result.model_version = version.name, version.version
        result.merged_dir = version.path
    write_atomic(
        result_file,
        json.dumps(
            json.loads(result.to_json()) | {"config": json.loads(config.to_json())}, indent=2
        ),
    )
    reporter.materialized(
        materialization_metadata(result, config), data_version=_data_version(result)
    )
    return result


def stage_weights(trainer: Any, out: Path) -> Path:
    """The trained weights (the adapter, or the whole model for full fine-tuning) in a staging
    folder. Every process calls this: under FSDP saving gathers each process's shards into a full
    state dict, a collective step; the main process alone writes."""
    staged = out / STAGED_DIR
    if trainer.is_world_process_zero():
        shutil.rmtree(staged, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(staged))
    trainer.accelerator.wait_for_everyone()
    return staged


def _move_into(source: Path, target: Path) -> None:
    for item in source.iterdir():
        if item.name != "training_args.bin":  # the Trainer's pickle, not part of a model folder
            shutil.move(str(item), target / item.name)
    shutil.rmtree(source, ignore_errors=True)


def save(
    trainer: Any, tokenizer: Any, config: TrainingConfig, out: Path, staged: Path
) -> tuple[Path | None, Path]:
    """Adapter as trained, and merged weights in full precision, each published by one rename."""
    import torch
    from transformers import AutoModelForCausalLM

    merged = out / "merged"
    if config.hyperparameters.method == "full":
        with publishing(merged, replace=True) as staging:
            _move_into(staged, staging)
            tokenizer.save_pretrained(staging)
        return None, merged

    from peft import PeftModel

    adapter = out / "adapter"
    with publishing(adapter, replace=True) as staging:
        _move_into(staged, staging)
    # Reload the base unquantized (QLoRA trains on 4-bit weights, but merges into real ones).
    dtype = (
        torch.bfloat16
        if next(trainer.model.parameters()).dtype == torch.bfloat16
        else torch.float32
    )
    base = AutoModelForCausalLM.from_pretrained(config.base_model, dtype=dtype)
    model = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    with publishing(merged, replace=True) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        shutil.copytree(adapter, staging / "adapter")
    return adapter, merged


def _data_version(result: TrainingResult) -> str:
    if result.model_version is not None:
        return f"{result.model_name}-v{result.model_version}"
    return hashlib.sha256(str(result.merged_dir).encode()).hexdigest()[:16]


def materialization_metadata(result: TrainingResult, config: TrainingConfig) -> dict[str, Any]:
    """What the Dagster UI shows for the model: metrics, curves, lineage, where it is."""
    shown = {k: v for k, v in result.metrics.items() if v is not None}
    metadata: dict[str, Any] = {
        "curves": md(curves_markdown(result.log_history)),
        "metrics": md(key_value_table(shown)),
        "lineage": {"raw_value": result.lineage, "type": "json"},
        "config": {"raw_value": json.loads(config.to_json())["hyperparameters"], "type": "json"},
        "model_path": {"raw_value": str(result.merged_dir), "type": "path"},
        "dataset_version": result.lineage["dataset_version"],
        "code_version": result.lineage["code_version"],
    }
    for key in ("final_loss", "first_loss", "steps", "train_runtime_s", "tokens_seen"):
        if result.metrics.get(key) is not None:
            metadata[key] = result.metrics[key]
    if result.adapter_dir:
        metadata["adapter_path"] = {"raw_value": str(result.adapter_dir), "type": "path"}
    if result.model_version is not None:
        metadata["model_name"] = result.model_name
        metadata["model_version"] = result.model_version
    return metadata


def _finish_wandb() -> None:
    import sys

    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()


def progress_callback(reporter: Reporter):  # type: ignore[no-untyped-def]
    """A TrainerCallback forwarding the trainer's log lines (loss, learning rate) to the reporter."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
            if state.is_world_process_zero and logs:
                shown = ", ".join(
                    f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in logs.items()
                )
                reporter.info(f"step {state.global_step}/{state.max_steps}: {shown}")

    return Progress()


def main(stage: str, make_trainer: TrainerFactory, argv: Sequence[str] | None = None) -> int:
    """Command line of `python -m twin_platform.training.sft|dpo`: a config file, or the one Dagster sent."""
    import argparse
    import logging

    from twin_platform.training.data import DatasetError
    from twin_platform.training.reporting import open_reporter

    parser = argparse.ArgumentParser(
        prog=f"python -m twin_platform.training.{stage}",
        description=f"Train the {stage.upper()} stage of the twin. Runs the same by hand, under "
        "`accelerate launch` (several GPUs) and under Dagster Pipes (which sends the config).",
    )
    parser.add_argument(
        "--config", type=Path, help="TrainingConfig as JSON or YAML (optional under Dagster Pipes)."
    )
    args = parser.parse_args(argv)
    if os.environ.get(PARENT_PID_ENV):
        exit_with(int(os.environ[PARENT_PID_ENV]))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with open_reporter() as reporter:
        if args.config:
            config = TrainingConfig.load(args.config)
        elif "config" in reporter.extras:
            config = TrainingConfig.model_validate(reporter.extras["config"])
        else:
            parser.error("--config is required when not launched by Dagster")
        if config.stage != stage:
            parser.error(f"the config is for stage {config.stage!r}, not {stage!r}")
        try:
            result = run(config, make_trainer, reporter)
        except (DatasetError, TrainingError) as exc:
            reporter.error(str(exc))
            raise SystemExit(f"error: {exc}") from None
        reporter.info(f"{stage}: done, merged model at {result.merged_dir}")
    return 0


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
