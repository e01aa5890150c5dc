"""Production configuration is valid: Dagster instance variants and docker-compose.yml."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._config import validate_config
from dagster._core.instance.config import dagster_instance_config

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = [
    "dagster.yaml",
    "deploy/dagster/dagster.postgres.yaml",
    "deploy/dagster/dagster.docker.yaml",
    "deploy/dagster/dagster.ecs.yaml",
]


@pytest.mark.parametrize("variant", VARIANTS)
def test_instance_config_validates(
    variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", "postgresql+psycopg2://u:p@localhost/dagster")
    monkeypatch.setenv("TWIN_ECS_TASK_DEFINITION", "twin-run:1")
    shutil.copy(ROOT / variant, tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    launcher = config.get("run_launcher")
    if launcher:  # the launcher's own schema is only checked when it is built; check it here
        module = __import__(launcher["module"], fromlist=[launcher["class"]])
        launcher_cls = getattr(module, launcher["class"])
        result = validate_config(launcher_cls.config_type(), launcher["config"])
        assert result.success, [e.message for e in result.errors]
    assert config["concurrency"]["pools"]["default_limit"] >= 1


def test_postgres_instance_runs_on_a_real_postgres(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS dagster_instance_test")
        conn.execute("CREATE DATABASE dagster_instance_test")
    socket_dir = postgres_url.split("host=")[1]
    monkeypatch.setenv(
        "DAGSTER_POSTGRES_URL",
        f"postgresql+psycopg2://postgres@/dagster_instance_test?host={socket_dir}",
    )
    shutil.copy(ROOT / "deploy/dagster/dagster.postgres.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:

        @dg.asset
        def probe() -> int:
            return 1

        assert dg.materialize([probe], instance=instance).success
        assert instance.get_latest_materialization_event(dg.AssetKey("probe")) is not None
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"


def test_docker_run_launcher_builds_without_an_engine() -> None:
    from dagster_docker import DockerRunLauncher

    config = yaml.safe_load((ROOT / "deploy/dagster/dagster.docker.yaml").read_text())
    launcher = DockerRunLauncher(**config["run_launcher"]["config"])
    assert launcher.image == "twin-platform:latest"


def test_compose_file_is_complete() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    svc = compose["services"]
    assert svc["mongodb"]["image"].startswith("mongo:7")
    assert svc["postgres"]["image"].startswith("pgvector/pgvector:")
    assert {"code-location", "dagster-webserver", "dagster-daemon", "api"} <= set(svc)
    for name, service in svc.items():
        assert "healthcheck" in service, f"{name} has no healthcheck"
    needs = {  # each service gets the variables it needs, by name, never the whole .env
        "code-location": {"DATABASE_URL", "MONGODB_URI", "DAGSTER_POSTGRES_URL"},
        "dagster-daemon": {"DATABASE_URL", "MONGODB_URI", "DAGSTER_POSTGRES_URL"},
        "dagster-webserver": {"DAGSTER_POSTGRES_URL"},
        "api": {"DATABASE_URL", "TWIN_API_KEYS"},
    }
    for name, variables in needs.items():
        env = svc[name]["environment"]
        assert variables <= set(env), name
        assert "env_file" not in svc[name]
        assert env.get("DAGSTER_POSTGRES_URL", "postgresql+psycopg2://").startswith(
            "postgresql+psycopg2://"
        )
    assert "TWIN_API_KEYS" not in svc["code-location"]["environment"]
    assert svc["postgres"]["shm_size"] and "config_file" in " ".join(svc["postgres"]["command"])
    assert {"postgres-data", "mongo-data", "twin-data"} <= set(compose["volumes"])
    # Secrets only through variables, never literal values.
    text = (ROOT / "docker-compose.yml").read_text()
    assert "change-me" not in text
    workspace = yaml.safe_load((ROOT / "deploy/dagster/workspace.docker.yaml").read_text())
    assert workspace["load_from"][0]["grpc_server"]["host"] == "code-location"


def test_compose_vllm_service_is_optional_and_wired_to_the_api() -> None:
    """The vllm service starts only with its profile; deploy/compose.vllm.yml requires its key (kept
    out of docker-compose.yml, which compose interpolates whole: a required variable there would
    stop every `up`, vLLM or not) and points the API at it."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    vllm = compose["services"]["vllm"]
    assert vllm["profiles"] == ["vllm"]
    command = " ".join(vllm["command"])
    for flag in ("--model=", "--enable-lora", "--max-loras=", "--max-lora-rank="):
        assert flag in command, flag
    assert vllm["environment"]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert "VLLM_API_KEY" not in vllm["environment"]
    device = vllm["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert "/health" in " ".join(vllm["healthcheck"]["test"])
    assert "twin-data:/data/twin:ro" in vllm["volumes"]  # the adapters, at the recorded paths
    assert "ports" not in vllm  # vLLM checks its key on /v1 only: the compose network alone
    api = compose["services"]["api"]
    assert "TWIN_SERVE_BACKEND" in api["environment"]
    assert api["environment"]["TWIN_API_KEYS"].startswith("${TWIN_API_KEYS:?")

    override = yaml.safe_load((ROOT / "deploy/compose.vllm.yml").read_text())["services"]
    assert set(override) == {"vllm", "api"}
    assert override["vllm"]["environment"]["VLLM_API_KEY"].startswith("${VLLM_API_KEY:?")
    wired = override["api"]["environment"]
    assert wired["TWIN_SERVE_BACKEND"] == "vllm"
    assert wired["TWIN_SERVE_API_BASE"] == "http://vllm:8000/v1"
    assert wired["TWIN_SERVE_API_KEY"].startswith("${VLLM_API_KEY:?")
    assert (
        wired["TWIN_SERVE_MODEL"] == "openai/twin-base"
        and "--served-model-name=twin-base" in command
    )
    assert override["api"]["depends_on"]["vllm"]["condition"] == "service_healthy"


def test_run_launchers_forward_only_what_a_run_needs() -> None:
    """No API keys or trainer tokens in every run's environment, and every pipeline setting the
    compose file gives the daemon reaches the runs; ECS secrets by ARN, from the environment of the
    deployment, never literal values."""
    run_needs = {"DATABASE_URL", "MONGODB_URI", "DAGSTER_POSTGRES_URL"}
    docker = yaml.safe_load((ROOT / "deploy/dagster/dagster.docker.yaml").read_text())
    forwarded = set(docker["run_launcher"]["config"]["env_vars"])
    assert run_needs | {"TWIN_HOME", "TWIN_API_URL", "TWIN_EXECUTOR"} <= forwarded
    assert not forwarded & {"TWIN_API_KEYS", "WANDB_API_KEY", "HF_TOKEN", "POSTGRES_PASSWORD"}
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    daemon = set(compose["services"]["dagster-daemon"]["environment"])
    assert forwarded - {"TWIN_ENV_FILE", "HF_HUB_OFFLINE", "TWIN_HOME"} <= daemon
    ecs = yaml.safe_load((ROOT / "deploy/dagster/dagster.ecs.yaml").read_text())
    config = ecs["run_launcher"]["config"]
    assert config["secrets_tag"] is None  # no "every secret with this tag" lookup
    assert {secret["name"] for secret in config["secrets"]} == run_needs
    assert all(set(secret["valueFrom"]) == {"env"} for secret in config["secrets"])
