"""Secrets never travel in launch requests: ECS task overrides and Docker container arguments carry
references (Secrets Manager / SSM ARNs, a mounted env file), never values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from resources.training import CONTAINER_SECRETS_FILE, TrainingLauncher, trainer_command

SECRETS = {"WANDB_API_KEY": "wandb-secret-0123456789", "HF_TOKEN": "hf_secret_9876543210"}
ARNS = {
    "WANDB_API_KEY": "arn:aws:secretsmanager:us-east-1:123456789012:secret:twin/wandb-AbCdEf",
    "HF_TOKEN": "arn:aws:ssm:us-east-1:123456789012:parameter/twin/hf-token",
}
EXECUTION_ROLE = "arn:aws:iam::123456789012:role/twin-trainer-execution"


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The launching process's environment, as a run worker that has the secrets would have it."""
    values = SECRETS | {
        "TWIN_HOME": "/data/twin",
        "WANDB_PROJECT": "twin",
        "AWS_REGION": "eu-west-1",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return dict(os.environ)


def assert_no_secret_in(value: Any) -> None:
    text = json.dumps(value, default=str)
    for secret in SECRETS.values():
        assert secret not in text


@pytest.fixture
def ecs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An ECS API (moto's server over HTTP) holding the trainer's task definition, no secrets."""
    import boto3
    from moto.server import ThreadedMotoServer

    from twin_platform.servers.process import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))
    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("ecs", endpoint_url=endpoint, region_name="us-east-1")
    client.register_task_definition(
        family="twin-trainer",
        executionRoleArn=EXECUTION_ROLE,
        requiresCompatibilities=["EC2"],
        containerDefinitions=[
            {
                "name": "trainer",
                "image": "twin-platform:latest",
                "memory": 16384,
                "environment": [{"name": "WANDB_MODE", "value": "online"}],
            }
        ],
    )
    try:
        yield client
    finally:
        server.stop()


def ecs_launcher(**overrides: Any) -> TrainingLauncher:
    config = {
        "launcher": "ecs",
        "ecs_cluster": "gpu",
        "ecs_task_definition": "twin-trainer",
        "ecs_secrets": ARNS,
    }
    return TrainingLauncher(**(config | overrides))


def test_ecs_run_task_carries_secret_references_not_values(
    ecs: Any, environ: dict[str, str]
) -> None:
    params = ecs_launcher().ecs_run_task_params(ecs, trainer_command("sft", 1), environ)
    assert_no_secret_in(params)
    override = params["overrides"]["containerOverrides"][0]
    names = {e["name"] for e in override["environment"]}
    assert {"TWIN_HOME", "WANDB_PROJECT", "AWS_REGION"} <= names
    assert not names & set(SECRETS)

    definition = ecs.describe_task_definition(taskDefinition=params["taskDefinition"])
    assert_no_secret_in(definition)
    [container] = definition["taskDefinition"]["containerDefinitions"]
    assert {s["name"]: s["valueFrom"] for s in container["secrets"]} == ARNS
    assert container["environment"] == [{"name": "WANDB_MODE", "value": "online"}]
    assert definition["taskDefinition"]["executionRoleArn"] == EXECUTION_ROLE

    again = ecs_launcher().ecs_run_task_params(ecs, trainer_command("dpo", 1), environ)
    assert again["taskDefinition"] == params["taskDefinition"]  # no new revision per run


def test_ecs_secrets_need_an_execution_role(ecs: Any, environ: dict[str, str]) -> None:
    ecs.register_task_definition(
        family="no-role",
        containerDefinitions=[{"name": "trainer", "image": "x", "memory": 512}],
    )
    launcher = ecs_launcher(ecs_task_definition="no-role")
    with pytest.raises(ValueError, match="executionRoleArn"):
        launcher.ecs_run_task_params(ecs, ["x"], environ)


def test_ecs_without_configured_secrets_forwards_none(ecs: Any, environ: dict[str, str]) -> None:
    params = ecs_launcher(ecs_secrets={}).ecs_run_task_params(ecs, ["x"], environ)
    assert_no_secret_in(params)
    assert params["taskDefinition"] == "twin-trainer"


def test_docker_trainer_reads_secrets_from_a_mounted_env_file(
    environ: dict[str, str], tmp_path: Path
) -> None:
    secrets_file = tmp_path / "trainer.env"
    secrets_file.write_text("".join(f"{k}={v}\n" for k, v in SECRETS.items()))
    launcher = TrainingLauncher(
        launcher="docker", docker_volumes=["/data:/data"], docker_secrets_file=str(secrets_file)
    )
    trainer = trainer_command("sft", 1)
    command, env, kwargs = launcher.docker_run_args(trainer, environ)
    assert_no_secret_in([command, env, kwargs])
    assert env["TWIN_HOME"] == "/data/twin" and not set(env) & set(SECRETS)
    assert kwargs["volumes"] == ["/data:/data", f"{secrets_file}:{CONTAINER_SECRETS_FILE}:ro"]
    wrapper = command[: -len(trainer)]
    assert command[len(wrapper) :] == trainer and CONTAINER_SECRETS_FILE in wrapper

    # The wrapper really hands the values to the trainer: run it here, on the host's file.
    local = {"python": sys.executable, CONTAINER_SECRETS_FILE: str(secrets_file)}
    probe = [sys.executable, "-c", "import os; print(os.environ['HF_TOKEN'])"]
    clean = {k: v for k, v in environ.items() if k not in SECRETS}
    result = subprocess.run(
        [*(local.get(a, a) for a in wrapper), *probe], env=clean, capture_output=True, text=True
    )
    assert result.stdout.strip() == SECRETS["HF_TOKEN"], result.stderr


def test_docker_without_a_secrets_file_forwards_no_secret(environ: dict[str, str]) -> None:
    command, env, kwargs = TrainingLauncher(launcher="docker").docker_run_args(
        trainer_command("sft", 1), environ
    )
    assert_no_secret_in([command, env, kwargs])
    assert command == trainer_command("sft", 1)
