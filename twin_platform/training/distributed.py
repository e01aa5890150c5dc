"""How a trainer spreads over GPUs: the `accelerate launch` command line for DDP or FSDP.

The trainer itself does not change: the same entrypoint (`-m twin_platform.training.sft|dpo`) reads
the same `TrainingConfig` on one GPU, on eight, or on several machines. What changes is how
`accelerate launch` starts it:

- `ddp` (default): one process per GPU, each holding the whole model; gradients are averaged.
  Right for LoRA/QLoRA and for any model whose weights, gradients and optimizer state fit one GPU.
- `fsdp`: FSDP2 shards parameters, gradients and optimizer state across the GPUs, one decoder layer
  at a time: for models that do not fit one GPU (full fine-tuning of the 8B shape).

Each strategy's settings are a committed accelerate config file, `deploy/accelerate/<strategy>.yaml`,
usable by hand; the launcher adds what differs per run: how many processes, machines, which rank,
and where rank 0 listens. Several machines: run the same command on each with its own
`machine_rank` (0 .. num_machines-1) and rank 0's address in `main_process_ip`.

Only pydantic is imported here, like `config.py`: the GPU benchmark uses it on a bare machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from twin_platform.training.config import Stage

Strategy = Literal["ddp", "fsdp"]
# The committed accelerate configs, beside the code in a checkout and at /app in the image.
ACCELERATE_CONFIG_DIR = Path(__file__).resolve().parents[2] / "deploy" / "accelerate"
IMAGE_ACCELERATE_CONFIG_DIR = "/app/deploy/accelerate"


class DistributedConfig(BaseModel):
    """Where the processes of one training run go."""

    model_config = ConfigDict(extra="forbid")

    strategy: Strategy = "ddp"
    num_processes: int = Field(default=1, ge=1, description="Processes per machine: its GPUs.")
    num_machines: int = Field(default=1, ge=1)
    machine_rank: int = Field(default=0, ge=0, description="This machine: 0 .. num_machines-1.")
    main_process_ip: str | None = Field(
        default=None, description="Address of machine 0, which every machine connects to."
    )
    main_process_port: int = Field(default=29500, ge=1, le=65535)

    @model_validator(mode="after")
    def _multi_node_needs_rank_zero(self) -> DistributedConfig:
        if self.machine_rank >= self.num_machines:
            raise ValueError(
                f"machine_rank {self.machine_rank} is not below num_machines {self.num_machines}"
            )
        if self.num_machines > 1 and not self.main_process_ip:
            raise ValueError("several machines need main_process_ip: the address of machine 0")
        return self

    @property
    def world_size(self) -> int:
        return self.num_processes * self.num_machines


def accelerate_options(
    distributed: DistributedConfig, config_dir: Path | str = ACCELERATE_CONFIG_DIR
) -> list[str]:
    """`accelerate launch` options: the strategy's config file and this run's counts.

    `--num_processes` is accelerate's total over all machines. Every count is passed even when it
    matches the file, so a developer's own default accelerate config never decides it.
    """
    options = [
        "--num_processes",
        str(distributed.world_size),
        "--config_file",
        f"{config_dir}/{distributed.strategy}.yaml",
        "--num_machines",
        str(distributed.num_machines),
        "--machine_rank",
        str(distributed.machine_rank),
    ]
    if distributed.num_machines > 1:
        options += [
            "--main_process_ip",
            str(distributed.main_process_ip),
            "--main_process_port",
            str(distributed.main_process_port),
        ]
    return options


def launch_command(
    stage: Stage,
    distributed: DistributedConfig,
    *,
    python: str = "python",
    accelerate: str = "accelerate",
    config_dir: Path | str = ACCELERATE_CONFIG_DIR,
) -> list[str]:
    """The trainer's command line: plain Python for one process, `accelerate launch` for more."""
    module = f"twin_platform.training.{stage}"
    if distributed.world_size == 1:
        return [python, "-m", module]
    return [
        accelerate,
        "launch",
        *accelerate_options(distributed, config_dir),
        "-m",
        module,
    ]
