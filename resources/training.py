"""Where trainers run, chosen by configuration: a local subprocess, a Docker GPU container, or AWS ECS.

Each launcher starts the same entrypoint (`python -m twin_platform.training.sft|dpo`) through Dagster
Pipes, sends the run's config as a Pipes extra and gets logs, metrics and the materialization back.
With `num_processes` > 1 the entrypoint runs under `accelerate launch` (one process per GPU).
Docker and ECS need the dataset and base model folders at the same paths in the container (mount
TWIN_HOME, or EFS on ECS) and a shared registry (TWIN_MODEL_REGISTRY=s3://...).

Secrets (`SECRET_ENV`) never travel in a launch request, where DescribeTasks, CloudTrail or
`docker inspect` would show them: on ECS the task definition references Secrets Manager or SSM
ARNs (`ecs_secrets`), resolved by ECS when the container starts; on Docker an env file on the host
(`docker_secrets_file`) is mounted read-only and loaded by the trainer's command line. Only plain
settings (`FORWARDED_ENV`) are passed as values.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from twin_platform.training.config import Stage, TrainingConfig

# Plain settings, forwarded into containers as values when set here.
FORWARDED_ENV = (
    "WANDB_MODE",
    "WANDB_PROJECT",
    "TWIN_HOME",
    "TWIN_MODEL_REGISTRY",
    "HF_HUB_OFFLINE",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
)
# What a trainer may need that is secret: handed to a local subprocess, referenced for containers.
SECRET_ENV = ("WANDB_API_KEY", "HF_TOKEN")
# Where the Docker trainer finds its secrets env file.
CONTAINER_SECRETS_FILE = "/run/secrets/twin-trainer.env"
# The fields of a described task definition that register_task_definition takes back.
_TASK_DEFINITION_FIELDS = (
    "family",
    "taskRoleArn",
    "executionRoleArn",
    "networkMode",
    "volumes",
    "placementConstraints",
    "requiresCompatibilities",
    "cpu",
    "memory",
    "pidMode",
    "ipcMode",
    "proxyConfiguration",
    "inferenceAccelerators",
    "ephemeralStorage",
    "runtimePlatform",
)


def plain_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The forwarded settings that are set, never a secret."""
    return {name: environ[name] for name in FORWARDED_ENV if environ.get(name)}


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
    environment: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """`ecs.run_task` parameters: GPUs need the EC2 launch type and a GPU resource requirement.
    `environment` is visible to anyone who may describe the task: plain settings only."""
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
                    "environment": [
                        {"name": k, "value": v} for k, v in (environment or {}).items()
                    ],
                }
            ]
        },
    }
    if subnets:
        params["networkConfiguration"] = {
            "awsvpcConfiguration": {"subnets": subnets, "securityGroups": security_groups}
        }
    return params


def ecs_task_definition_with_secrets(
    ecs: Any, task_definition: str, container: str, secrets: Mapping[str, str]
) -> str:
    """The ARN of `task_definition` if its `container` already takes `secrets` (env name ->
    Secrets Manager or SSM parameter ARN), else of a new revision of it that does.

    run_task overrides cannot carry secrets, so they live in the task definition; ECS reads them
    with the execution role when the container starts. Naming the family (not a revision) in
    `ecs_task_definition` makes later runs find that revision instead of registering another.
    """
    described = ecs.describe_task_definition(taskDefinition=task_definition, include=["TAGS"])
    definition = described["taskDefinition"]
    target = next((c for c in definition["containerDefinitions"] if c["name"] == container), None)
    if target is None:
        raise ValueError(f"task definition {task_definition} has no container {container!r}")
    current = {s["name"]: s["valueFrom"] for s in target.get("secrets", [])}
    if all(current.get(name) == arn for name, arn in secrets.items()):
        return str(definition["taskDefinitionArn"])
    if not definition.get("executionRoleArn"):
        raise ValueError(
            f"task definition {task_definition} needs an executionRoleArn that may read its"
            " secrets (secretsmanager:GetSecretValue, ssm:GetParameters)"
        )
    target["secrets"] = [{"name": k, "valueFrom": v} for k, v in (current | dict(secrets)).items()]
    target["environment"] = [e for e in target.get("environment", []) if e["name"] not in secrets]
    fields = {k: definition[k] for k in _TASK_DEFINITION_FIELDS if definition.get(k)}
    fields |= {"tags": described["tags"]} if described.get("tags") else {}
    registered = ecs.register_task_definition(
        **fields, containerDefinitions=definition["containerDefinitions"]
    )
    return str(registered["taskDefinition"]["taskDefinitionArn"])


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
    docker_secrets_file: str = Field(
        default="",
        description="Env file on the Docker host with the trainer's secrets (WANDB_API_KEY=...,"
        " HF_TOKEN=...; mode 0600), mounted read-only: values never enter the container config.",
    )
    ecs_cluster: str = ""
    ecs_task_definition: str = Field(
        default="", description="A task definition whose container has GPUs."
    )
    ecs_container: str = "trainer"
    ecs_gpus: int = 1
    ecs_subnets: list[str] = Field(default_factory=list)
    ecs_security_groups: list[str] = Field(default_factory=list)
    ecs_secrets: dict[str, str] = Field(
        default_factory=dict,
        description="Trainer secrets as env name -> Secrets Manager or SSM parameter ARN (e.g."
        " WANDB_API_KEY, HF_TOKEN); put into the task definition, never into the request.",
    )

    def docker_run_args(
        self, command: list[str], environ: Mapping[str, str]
    ) -> tuple[list[str], dict[str, str], dict[str, Any]]:
        """Command, environment and container kwargs of the Docker trainer: no secret values."""
        volumes = list(self.docker_volumes)
        if self.docker_secrets_file:
            volumes.append(f"{self.docker_secrets_file}:{CONTAINER_SECRETS_FILE}:ro")
            # python-dotenv's `run` execs the command with the file's variables added.
            command = ["python", "-m", "dotenv", "-f", CONTAINER_SECRETS_FILE, "run", *command]
        kwargs = docker_container_kwargs(self.docker_gpus, volumes, self.docker_shm_size)
        return command, plain_env(environ), kwargs

    def ecs_run_task_params(
        self, ecs: Any, command: list[str], environ: Mapping[str, str]
    ) -> dict[str, Any]:
        """`run_task` parameters of the ECS trainer: secrets by reference in its task definition."""
        task_definition = self.ecs_task_definition
        if self.ecs_secrets:
            task_definition = ecs_task_definition_with_secrets(
                ecs, task_definition, self.ecs_container, self.ecs_secrets
            )
        return ecs_run_task_params(
            cluster=self.ecs_cluster,
            task_definition=task_definition,
            container=self.ecs_container,
            command=command,
            gpus=self.ecs_gpus,
            subnets=self.ecs_subnets,
            security_groups=self.ecs_security_groups,
            environment=plain_env(environ),
        )

    def run(
        self, context: dg.AssetExecutionContext, config: TrainingConfig
    ) -> dg.PipesClientCompletedInvocation:
        extras = {"config": json.loads(config.to_json())}
        if self.launcher == "subprocess":  # this machine, this user: secrets may stay in env
            command = trainer_command(config.stage, self.num_processes, python=sys.executable)
            if self.num_processes > 1:
                command[0] = os.path.join(os.path.dirname(sys.executable), "accelerate")
            env = plain_env(os.environ) | {
                name: os.environ[name] for name in SECRET_ENV if os.environ.get(name)
            }
            return dg.PipesSubprocessClient().run(
                context=context, command=command, extras=extras, env=env
            )
        self._warn_unforwarded_secrets(context)
        command = trainer_command(config.stage, self.num_processes)
        if self.launcher == "docker":
            from dagster_docker import PipesDockerClient

            command, env, kwargs = self.docker_run_args(command, os.environ)
            return PipesDockerClient().run(
                context=context,
                image=self.docker_image,
                command=command,
                extras=extras,
                env=env,
                container_kwargs=kwargs,
            )
        if not (self.ecs_cluster and self.ecs_task_definition):
            raise dg.Failure("the ecs launcher needs ecs_cluster and ecs_task_definition")
        import boto3
        from dagster_aws.pipes import PipesECSClient

        ecs = boto3.client("ecs")
        params = self.ecs_run_task_params(ecs, command, os.environ)
        return PipesECSClient(client=ecs).run(
            context=context,
            run_task_params=params,  # type: ignore[arg-type]
            extras=extras,
        )

    def _warn_unforwarded_secrets(self, context: dg.AssetExecutionContext) -> None:
        """A secret set here that no mechanism hands to the container: say so in the run log."""
        configured = self.docker_secrets_file if self.launcher == "docker" else self.ecs_secrets
        missing = [name for name in SECRET_ENV if os.environ.get(name)]
        if missing and not configured:
            setting = "docker_secrets_file" if self.launcher == "docker" else "ecs_secrets"
            context.log.warning(
                f"{', '.join(missing)} set here but not passed to the {self.launcher} trainer"
                f" (secrets never travel in launch requests): configure {setting}"
            )
