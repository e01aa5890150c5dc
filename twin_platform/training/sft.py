"""Supervised fine-tuning with TRL's SFTTrainer: `python -m twin_platform.training.sft --config run.json`.

Rows are conversational prompt-completion pairs rendered with the tokenizer's own chat template, so
the loss falls on the author's answer only and the prompt format is the one the API serves.
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
    from trl import SFTConfig, SFTTrainer

    hp = config.hyperparameters
    args = SFTConfig(
        **trainer_arguments(
            hp,
            stage="sft",
            output_dir=output_dir,
            on_gpu=on_gpu,
            bf16_ok=bf16_ok,
            gradient_checkpointing=gradient_checkpointing,
        ),
        report_to=config.report_to,
        run_name=config.run_name,
        dataloader_pin_memory=on_gpu,
    )
    return SFTTrainer(
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
    sys.exit(main("sft", make_trainer))
