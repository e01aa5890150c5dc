"""Where trainers run, chosen by configuration: a local subprocess, a Docker GPU container, or AWS ECS.

Each launcher starts the same entrypoint (`python -m twin_platform.training.sft|dpo`) through Dagster
Pipes, sends the run's config as a Pipes extra and gets logs, metrics and the materialization back.
With `num_processes` > 1 the entrypoint runs under `accelerate launch` (one process per GPU).
Docker and ECS need the dataset and base model folders at the same paths in the container (mount
TWIN_HOME, or EFS on ECS) and a shared registry (TWIN_MODEL_REGISTRY=s3://...).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from twin_platform.training.config import Stage, TrainingConfig

# Forwarded into containers when set here (never logged).
FORWARDED_ENV = (
    "WANDB_API_KEY",
    "WANDB_MODE",
    "WANDB_PROJECT",
    "TWIN_HOME",
    "TWIN_MODEL_REGISTRY",
    "HF_TOKEN",
    "HF_HUB_OFFLINE",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
)


def trainer_command(stage: Stage, num_processes: int, python: str = "python") -> list[str]:
    module = f"twin_platform.training.{stage}"
    if num_processes > 1:
        return ["accelerate", "launch", "--num_processes", str(num_processes), "-m", module]
    return [python, "-m", module]


def docker_container_kwargs(gpus: int, volumes: list[str], shm_size: str) -> dict[str, Any]:
    """docker-py `containers.create` arguments: GPUs through the NVIDIA device request."""
    import docker

    return {
        "device_requests": [docker.types.DeviceRequest(count=gpus, capabilities=[["gpu"]])]
        if gpus
        else [],
        "volumes": volumes,
        "shm_size": shm_size,
    }


def ecs_run_task_params(
    *,
    cluster: str,
    task_definition: str,
    container: str,
    command: list[str],
    gpus: int,
    subnets: list[str],
    security_groups: list[str],
) -> dict[str, Any]:
    """`ecs.run_task` parameters: GPUs need the EC2 launch type and a GPU resource requirement."""
    params: dict[str, Any] = {
        "cluster": cluster,
        "taskDefinition": task_definition,
        "launchType": "EC2",
        "count": 1,
        "overrides": {
            "containerOverrides": [
                {
                    "name": container,
                    "command": command,
                    "resourceRequirements": [{"type": "GPU", "value": str(gpus)}],
                }
            ]
        },
    }
    if subnets:
        params["networkConfiguration"] = {
            "awsvpcConfiguration": {"subnets": subnets, "securityGroups": security_groups}
        }
    return params


class TrainingLauncher(dg.ConfigurableResource):
    """Runs a training stage outside the Dagster process and reports back through Pipes."""

    launcher: Literal["subprocess", "docker", "ecs"] = Field(
        default="subprocess",
        description="subprocess (default, this machine), docker (GPU container) or ecs.",
    )
    num_processes: int = Field(
        default=1, ge=1, description="> 1: `accelerate launch` with one process per GPU."
    )
    docker_image: str = "twin-platform:latest"
    docker_gpus: int = Field(default=-1, description="GPUs for the container; -1 = all, 0 = none.")
    docker_volumes: list[str] = Field(
        default_factory=list, description="host:container[:mode] mounts."
    )
    docker_shm_size: str = "16g"
    ecs_cluster: str = ""
    ecs_task_definition: str = Field(
        default="", description="A task definition whose container has GPUs."
    )
    ecs_container: str = "trainer"
    ecs_gpus: int = 1
    ecs_subnets: list[str] = Field(default_factory=list)
    ecs_security_groups: list[str] = Field(default_factory=list)

    def run(
        self, context: dg.AssetExecutionContext, config: TrainingConfig
    ) -> dg.PipesClientCompletedInvocation:
        extras = {"config": json.loads(config.to_json())}
        env = {name: os.environ[name] for name in FORWARDED_ENV if os.environ.get(name)}
        if self.launcher == "subprocess":
            command = trainer_command(config.stage, self.num_processes, python=sys.executable)
            if self.num_processes > 1:
                command[0] = os.path.join(os.path.dirname(sys.executable), "accelerate")
            return dg.PipesSubprocessClient().run(
                context=context, command=command, extras=extras, env=env
            )
        command = trainer_command(config.stage, self.num_processes)
        if self.launcher == "docker":
            from dagster_docker import PipesDockerClient

            return PipesDockerClient().run(
                context=context,
                image=self.docker_image,
                command=command,
                extras=extras,
                env=env,
                container_kwargs=docker_container_kwargs(
                    self.docker_gpus, self.docker_volumes, self.docker_shm_size
                ),
            )
        if not (self.ecs_cluster and self.ecs_task_definition):
            raise dg.Failure("the ecs launcher needs ecs_cluster and ecs_task_definition")
        from dagster_aws.pipes import PipesECSClient

        params = ecs_run_task_params(
            cluster=self.ecs_cluster,
            task_definition=self.ecs_task_definition,
            container=self.ecs_container,
            command=command,
            gpus=self.ecs_gpus,
            subnets=self.ecs_subnets,
            security_groups=self.ecs_security_groups,
        )
        params["overrides"]["containerOverrides"][0]["environment"] = [
            {"name": k, "value": v} for k, v in env.items()
        ]
        return PipesECSClient().run(context=context, run_task_params=params, extras=extras)  # type: ignore[arg-type]
