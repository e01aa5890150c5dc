"""Where trainers run, chosen by configuration: a local subprocess, a Docker GPU container, a
Kubernetes GPU pod, or AWS ECS.

Each launcher starts the same entrypoint (`python -m twin_platform.training.sft|dpo`, see
`trainer_command`) through Dagster Pipes, sends the run's config as a Pipes extra and gets logs,
metrics and the materialization back. With `num_processes` > 1 the entrypoint runs under
`accelerate launch` (one process per GPU) with the DDP or FSDP config of `deploy/accelerate/`
(`distributed`); several machines add `num_machines`, `machine_rank` and `main_process_ip`.
Docker, Kubernetes and ECS need the dataset and base model folders at the same paths in the
container (mount TWIN_HOME: a host folder, a PersistentVolumeClaim, EFS) and a shared registry
(TWIN_MODEL_REGISTRY=s3://...).

Secrets (`SECRET_ENV`) never travel in a launch request, where DescribeTasks, CloudTrail,
`kubectl get pod -o yaml` or `docker inspect` would show them: on ECS the task definition
references Secrets Manager or SSM ARNs (`ecs_secrets`), resolved by ECS when the container starts;
on Kubernetes the pod spec names Secrets (`envFrom.secretRef`, `valueFrom.secretKeyRef`), resolved
by the kubelet; on Docker an env file on the host (`docker_secrets_file`) is mounted read-only and
loaded by the trainer's command line. Only plain settings (`FORWARDED_ENV`) are passed as values.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from twin_platform.training.config import Stage, TrainingConfig
from twin_platform.training.distributed import (
    ACCELERATE_CONFIG_DIR,
    IMAGE_ACCELERATE_CONFIG_DIR,
    DistributedConfig,
    Strategy,
    launch_command,
)
from twin_platform.training.recovery import PARENT_PID_ENV

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
# The extended resource NVIDIA's device plugin advertises; GPUs are asked for as limits.
K8S_GPU_RESOURCE = "nvidia.com/gpu"
# The first container of the pod is the one Dagster Pipes talks to.
K8S_CONTAINER = "trainer"
# GPU nodes are usually tainted so that only pods asking for GPUs land there.
K8S_GPU_TOLERATIONS = [{"key": K8S_GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
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


def trainer_command(
    stage: Stage,
    num_processes: int,
    python: str = "python",
    *,
    strategy: Strategy = "ddp",
    num_machines: int = 1,
    machine_rank: int = 0,
    main_process_ip: str | None = None,
    main_process_port: int = 29500,
    config_dir: Path | str = ACCELERATE_CONFIG_DIR,
    accelerate: str = "accelerate",
) -> list[str]:
    """The trainer's command line, the same in every launcher: `python -m ...` for one process,
    `accelerate launch` with the strategy's config for several (`num_processes` per machine)."""
    distributed = DistributedConfig(
        strategy=strategy,
        num_processes=num_processes,
        num_machines=num_machines,
        machine_rank=machine_rank,
        main_process_ip=main_process_ip,
        main_process_port=main_process_port,
    )
    return launch_command(
        stage, distributed, python=python, accelerate=accelerate, config_dir=config_dir
    )


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


def _k8s_volumes(volumes: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`claim:/mount/path[:ro]` entries as PersistentVolumeClaim volumes and their mounts."""
    specs, mounts = [], []
    for number, entry in enumerate(volumes):
        claim, _, rest = entry.partition(":")
        path, _, mode = rest.partition(":")
        if not (_K8S_NAME.match(claim) and path.startswith("/") and mode in ("", "ro", "rw")):
            raise ValueError(f"k8s volume {entry!r} is not claim-name:/mount/path[:ro]")
        name = f"volume-{number}"
        specs.append(
            {"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": mode == "ro"}}
        )
        mounts.append({"name": name, "mountPath": path, "readOnly": mode == "ro"})
    return specs, mounts


def _k8s_secret_env(secret_env: Mapping[str, str]) -> list[dict[str, Any]]:
    """NAME -> `secret-name/key` as `valueFrom.secretKeyRef` entries: references, never values."""
    entries = []
    for name, reference in secret_env.items():
        secret, _, key = reference.partition("/")
        if not (_ENV_NAME.match(name) and _K8S_NAME.match(secret) and key):
            raise ValueError(f"k8s secret env {name}={reference!r} is not NAME=secret-name/key")
        entries.append({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    return entries


def k8s_pod_spec(
    *,
    image: str,
    command: list[str],
    gpus: int,
    env_from_secrets: list[str] | None = None,
    secret_env: Mapping[str, str] | None = None,
    volumes: list[str] | None = None,
    shm_size: str = "16Gi",
    service_account: str = "",
    node_selector: Mapping[str, str] | None = None,
    tolerations: list[dict[str, str]] | None = None,
    cpu: str = "",
    memory: str = "",
) -> dict[str, Any]:
    """The trainer pod's spec (Kubernetes API field names) for `PipesK8sClient`'s `base_pod_spec`.

    GPUs are `nvidia.com/gpu` limits (the scheduler places the pod on a node with that many
    free); `/dev/shm` is a memory-backed volume, as NCCL and the data loaders need more than the
    runtime's 64 MB; secrets are references to Kubernetes Secrets, resolved by the kubelet."""
    volume_specs, mounts = _k8s_volumes(volumes or [])
    if shm_size:
        volume_specs.append(
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm_size}}
        )
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    limits = {K8S_GPU_RESOURCE: str(gpus)} if gpus else {}
    requests: dict[str, str] = {}
    for name, value in (("cpu", cpu), ("memory", memory)):
        if value:
            limits[name] = requests[name] = value
    container: dict[str, Any] = {
        "name": K8S_CONTAINER,
        "image": image,
        "command": list(command),
        "resources": {"limits": limits, **({"requests": requests} if requests else {})},
        "env": _k8s_secret_env(secret_env or {}),
        "envFrom": [{"secretRef": {"name": name}} for name in env_from_secrets or []],
        "volumeMounts": mounts,
    }
    spec: dict[str, Any] = {
        "containers": [container],
        "restartPolicy": "Never",  # a failed trainer is the run's failure; Dagster retries runs
        "volumes": volume_specs,
        "tolerations": list(K8S_GPU_TOLERATIONS if tolerations is None else tolerations),
    }
    if service_account:
        spec["serviceAccountName"] = service_account
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    return spec


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

    launcher: Literal["subprocess", "docker", "k8s", "ecs"] = Field(
        default="subprocess",
        description="subprocess (default, this machine), docker (GPU container), k8s (GPU pod)"
        " or ecs.",
    )
    num_processes: int = Field(
        default=1,
        ge=1,
        description="GPUs per machine; > 1: `accelerate launch` with one process per GPU.",
    )
    distributed: Strategy = Field(
        default="ddp",
        description="ddp (each GPU holds the model) or fsdp (sharded: models too big for one GPU);"
        " the config files are deploy/accelerate/<strategy>.yaml.",
    )
    num_machines: int = Field(default=1, ge=1, description="Machines of one multi-node run.")
    machine_rank: int = Field(default=0, ge=0, description="The machine this launch starts.")
    main_process_ip: str = Field(default="", description="Address of machine 0 (multi-node).")
    main_process_port: int = 29500
    accelerate_config_dir: str = Field(
        default=IMAGE_ACCELERATE_CONFIG_DIR,
        description="deploy/accelerate inside the trainer image (containers only).",
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
    k8s_image: str = Field(default="", description="Trainer image; empty = docker_image.")
    k8s_namespace: str = Field(
        default="", description="Empty: the namespace Dagster runs in, else `default`."
    )
    k8s_service_account: str = ""
    k8s_gpus: int | None = Field(
        default=None, ge=0, description="nvidia.com/gpu limit of the pod; empty = num_processes."
    )
    k8s_volumes: list[str] = Field(
        default_factory=list,
        description="PersistentVolumeClaims as claim-name:/mount/path[:ro] (TWIN_HOME's, at the"
        " same path as here).",
    )
    k8s_shm_size: str = Field(default="16Gi", description="Memory-backed /dev/shm; empty: none.")
    k8s_env_from_secrets: list[str] = Field(
        default_factory=list,
        description="Kubernetes Secrets whose keys become the trainer's environment (envFrom),"
        " e.g. one holding WANDB_API_KEY and HF_TOKEN.",
    )
    k8s_secret_env: dict[str, str] = Field(
        default_factory=dict,
        description="Single variables from Secrets: NAME -> secret-name/key (secretKeyRef).",
    )
    k8s_node_selector: dict[str, str] = Field(default_factory=dict)
    k8s_tolerations: list[dict[str, str]] = Field(
        default_factory=lambda: [dict(t) for t in K8S_GPU_TOLERATIONS],
        description="Default: tolerate the nvidia.com/gpu taint of GPU nodes.",
    )
    k8s_cpu: str = Field(default="", description="CPU request and limit, e.g. 16.")
    k8s_memory: str = Field(default="", description="Memory request and limit, e.g. 128Gi.")
    k8s_load_incluster_config: bool | None = Field(
        default=None,
        description="Empty: in-cluster config inside a pod, else the kubeconfig.",
    )
    k8s_kubeconfig_file: str = ""
    k8s_context: str = ""
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

    def distributed_config(self) -> DistributedConfig:
        return DistributedConfig(
            strategy=self.distributed,
            num_processes=self.num_processes,
            num_machines=self.num_machines,
            machine_rank=self.machine_rank,
            main_process_ip=self.main_process_ip or None,
            main_process_port=self.main_process_port,
        )

    def trainer_command(self, stage: Stage, container: bool = True) -> list[str]:
        """The trainer's command: in a container with the image's Python and config folder, else
        with this interpreter's (the venv's `accelerate` beside it)."""
        if container:
            return launch_command(
                stage, self.distributed_config(), config_dir=self.accelerate_config_dir
            )
        bin_dir = os.path.dirname(sys.executable)
        return launch_command(
            stage,
            self.distributed_config(),
            python=sys.executable,
            accelerate=os.path.join(bin_dir, "accelerate"),
        )

    def k8s_run_args(
        self, command: list[str], environ: Mapping[str, str]
    ) -> tuple[dict[str, str], dict[str, Any]]:
        """Environment and pod spec of the Kubernetes trainer: secrets by reference only."""
        spec = k8s_pod_spec(
            image=self.k8s_image or self.docker_image,
            command=command,
            gpus=self.num_processes if self.k8s_gpus is None else self.k8s_gpus,
            env_from_secrets=self.k8s_env_from_secrets,
            secret_env=self.k8s_secret_env,
            volumes=self.k8s_volumes,
            shm_size=self.k8s_shm_size,
            service_account=self.k8s_service_account,
            node_selector=self.k8s_node_selector,
            tolerations=self.k8s_tolerations,
            cpu=self.k8s_cpu,
            memory=self.k8s_memory,
        )
        return plain_env(environ), spec

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
            command = self.trainer_command(config.stage, container=False)
            env = plain_env(os.environ) | {
                name: os.environ[name] for name in SECRET_ENV if os.environ.get(name)
            }
            # The trainer exits if this run worker dies, rather than train on beside the retry.
            env[PARENT_PID_ENV] = str(os.getpid())
            return dg.PipesSubprocessClient().run(
                context=context, command=command, extras=extras, env=env
            )
        self._warn_unforwarded_secrets(context)
        command = self.trainer_command(config.stage)
        if self.launcher == "k8s":
            from dagster_k8s import PipesK8sClient

            env, spec = self.k8s_run_args(command, os.environ)
            client = PipesK8sClient(
                load_incluster_config=self.k8s_load_incluster_config,
                kubeconfig_file=self.k8s_kubeconfig_file or None,
                kube_context=self.k8s_context or None,
            )
            return client.run(
                context=context,
                extras=extras,
                namespace=self.k8s_namespace or None,
                env=env,
                base_pod_meta={"labels": {"app.kubernetes.io/name": "twin-trainer"}},
                base_pod_spec=spec,
            )
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
        configured, setting = {
            "docker": (self.docker_secrets_file, "docker_secrets_file"),
            "k8s": (
                self.k8s_env_from_secrets or self.k8s_secret_env,
                "k8s_env_from_secrets or k8s_secret_env",
            ),
        }.get(self.launcher, (self.ecs_secrets, "ecs_secrets"))
        missing = [name for name in SECRET_ENV if os.environ.get(name)]
        if missing and not configured:
            context.log.warning(
                f"{', '.join(missing)} set here but not passed to the {self.launcher} trainer"
                f" (secrets never travel in launch requests): configure {setting}"
            )
