"""Preference tuning with TRL's DPOTrainer: `python -m twin_platform.training.dpo --config run.json`.

Starts from the SFT model (its merged folder is the run's `base_model`). With LoRA the reference
model is the same network with the adapter switched off, so no second copy sits in memory.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twin_platform.training.config import TrainingConfig, trainer_arguments
from twin_platform.training.reporting import Reporter
from twin_platform.training.runner import TrainingResult, main, run


def make_trainer(
    *,
    model: Any,
    tokenizer: Any,
    dataset: Any,
    peft_config: Any,
    config: TrainingConfig,
    on_gpu: bool,
    bf16_ok: bool,
    gradient_checkpointing: bool,
    output_dir: Path,
    callbacks: list[Any],
) -> Any:
    from trl import DPOConfig, DPOTrainer

    hp = config.hyperparameters
    args = DPOConfig(
        **trainer_arguments(
            hp,
            stage="dpo",
            output_dir=output_dir,
            on_gpu=on_gpu,
            bf16_ok=bf16_ok,
            gradient_checkpointing=gradient_checkpointing,
        ),
        beta=hp.beta,
        report_to=config.report_to,
        run_name=config.run_name,
        dataloader_pin_memory=on_gpu,
    )
    return DPOTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )


def train(
    config: TrainingConfig, reporter: Reporter | None = None, callbacks: Sequence[Any] = ()
) -> TrainingResult:
    return run(config, make_trainer, reporter, callbacks)


if __name__ == "__main__":
    sys.exit(main("dpo", make_trainer))
