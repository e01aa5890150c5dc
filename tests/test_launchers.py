"""GPU run launchers, checked against what runs here.

No Docker daemon and no Kubernetes API run on this machine, so the launch requests are validated by
the clients' own code instead: the Docker container's create body as docker-py builds it, the
trainer pod as `dagster-k8s` builds it for `PipesK8sClient` (a `kubernetes.client.V1Pod`,
serialized and read back as the API would), and the `accelerate launch` command lines as
accelerate's own parser and launcher resolve them. The DDP command line also runs for real, two
processes on CPU (gloo), on the tiny model (slow: about 80 s on two cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from resources.training import (
    CONTAINER_SECRETS_FILE,
    K8S_GPU_RESOURCE,
    TrainingLauncher,
    ecs_run_task_params,
    k8s_pod_spec,
    trainer_command,
)
from twin_platform.training.distributed import ACCELERATE_CONFIG_DIR, DistributedConfig

ROOT = Path(__file__).resolve().parents[1]
SECRETS = {"WANDB_API_KEY": "wandb-secret-0123456789", "HF_TOKEN": "hf_secret_9876543210"}
MODULE = ["-m", "twin_platform.training.sft"]


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A run worker's environment holding the trainer's secrets and plain settings."""
    for name, value in (SECRETS | {"TWIN_HOME": "/data/twin", "HF_HUB_OFFLINE": "1"}).items():
        monkeypatch.setenv(name, value)
    return dict(os.environ)


def assert_no_secret_in(value: Any) -> None:
    text = json.dumps(value, default=str)
    for secret in SECRETS.values():
        assert secret not in text


def k8s_launcher(**overrides: Any) -> TrainingLauncher:
    config: dict[str, Any] = {
        "launcher": "k8s",
        "num_processes": 2,
        "distributed": "fsdp",
        "k8s_image": "registry.example.com/twin-platform:1.2.3",
        "k8s_namespace": "twin",
        "k8s_service_account": "twin-trainer",
        "k8s_volumes": ["twin-home:/data/twin", "base-models:/models:ro"],
        "k8s_env_from_secrets": ["twin-trainer"],
        "k8s_secret_env": {"HF_TOKEN": "hugging-face/token"},
        "k8s_node_selector": {"nvidia.com/gpu.product": "NVIDIA-H200"},
        "k8s_cpu": "16",
        "k8s_memory": "128Gi",
    }
    return TrainingLauncher(**(config | overrides))


def test_every_launcher_runs_the_same_trainer_entrypoint(environ: dict[str, str]) -> None:
    for processes in (1, 2):
        subprocess_cmd = TrainingLauncher(num_processes=processes).trainer_command(
            "sft", container=False
        )
        container = TrainingLauncher(num_processes=processes).trainer_command("sft")
        docker_cmd, _, _ = TrainingLauncher(launcher="docker").docker_run_args(container, environ)
        _, spec = k8s_launcher(num_processes=processes).k8s_run_args(container, environ)
        ecs = ecs_run_task_params(
            cluster="gpu",
            task_definition="twin-trainer",
            container="trainer",
            command=container,
            gpus=processes,
            subnets=[],
            security_groups=[],
        )
        ecs_cmd = ecs["overrides"]["containerOverrides"][0]["command"]
        assert docker_cmd == container == ecs_cmd == spec["containers"][0]["command"]
        assert container[-2:] == MODULE
        # Here, only the interpreter and the config folder differ from the image's.
        local = [
            a.replace(str(ACCELERATE_CONFIG_DIR), "/app/deploy/accelerate") for a in subprocess_cmd
        ]
        if processes == 1:
            assert subprocess_cmd == [sys.executable, *MODULE] and container == ["python", *MODULE]
        else:
            assert local[0] == str(Path(sys.executable).parent / "accelerate")
            assert local[1:] == container[1:]
            assert container[:4] == ["accelerate", "launch", "--num_processes", "2"]


def test_docker_container_request_asks_for_gpus_and_carries_no_secret(
    environ: dict[str, str], tmp_path: Path
) -> None:
    """The body docker-py would POST to /containers/create, built by docker-py itself."""
    import docker
    from docker.models.containers import _create_container_args

    secrets_file = tmp_path / "trainer.env"
    secrets_file.write_text("".join(f"{k}={v}\n" for k, v in SECRETS.items()))
    launcher = TrainingLauncher(
        launcher="docker",
        num_processes=2,
        docker_volumes=["/srv/twin:/data/twin"],
        docker_secrets_file=str(secrets_file),
    )
    command, env, kwargs = launcher.docker_run_args(launcher.trainer_command("sft"), environ)
    client = docker.DockerClient(base_url="tcp://127.0.0.1:9", version="1.47")  # never dialled
    # What PipesDockerClient passes to containers.create, Pipes' own variables included.
    create = _create_container_args(
        {
            "image": launcher.docker_image,
            "command": command,
            "detach": True,
            "environment": {"DAGSTER_PIPES_CONTEXT": "ctx", "DAGSTER_PIPES_MESSAGES": "msg"} | env,
            "version": client.api._version,
            **kwargs,
        }
    )
    body = client.api.create_container_config(**create)
    assert_no_secret_in(body)
    host = body["HostConfig"]
    assert host["DeviceRequests"] == [
        {"Driver": "", "Count": -1, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}
    ]
    assert host["ShmSize"] == 16 * 1024**3
    assert host["Binds"] == ["/srv/twin:/data/twin", f"{secrets_file}:{CONTAINER_SECRETS_FILE}:ro"]
    assert body["Image"] == "twin-platform:latest" and body["Cmd"][-2:] == MODULE
    assert "--num_processes" in body["Cmd"] and "/app/deploy/accelerate/ddp.yaml" in body["Cmd"]
    assert {"TWIN_HOME=/data/twin", "HF_HUB_OFFLINE=1"} <= set(body["Env"])
    assert not any(entry.split("=")[0] in SECRETS for entry in body["Env"])


def build_pod(launcher: TrainingLauncher, environ: dict[str, str]) -> Any:
    """The V1Pod PipesK8sClient would create: dagster-k8s's own `build_pod_body`, which maps every
    field onto the kubernetes client's models (an unknown or mistyped field raises)."""
    from dagster_k8s.pipes import build_pod_body

    env, spec = launcher.k8s_run_args(launcher.trainer_command("sft"), environ)
    pipes = {"DAGSTER_PIPES_CONTEXT": "ctx", "DAGSTER_PIPES_MESSAGES": "msg"}
    return build_pod_body(
        pod_name="dagster-run-sft-model",
        image=None,
        command=None,
        env_vars=pipes | env,
        base_pod_meta={"labels": {"app.kubernetes.io/name": "twin-trainer"}},
        base_pod_spec=spec,
    )


def test_k8s_pod_spec_is_a_valid_gpu_pod_without_secret_values(environ: dict[str, str]) -> None:
    from kubernetes.client import ApiClient, V1Pod
    from kubernetes.utils import parse_quantity

    launcher = k8s_launcher()
    api = ApiClient()
    body = api.sanitize_for_serialization(build_pod(launcher, environ))  # the JSON sent
    assert_no_secret_in(body)
    pod = api.deserialize(SimpleNamespace(data=json.dumps(body)), "V1Pod")  # and read back
    assert isinstance(pod, V1Pod)
    spec = pod.spec
    [container] = spec.containers
    assert container.name == "trainer" and container.image == launcher.k8s_image
    assert container.command == launcher.trainer_command("sft")
    assert container.command[:4] == ["accelerate", "launch", "--num_processes", "2"]
    assert "/app/deploy/accelerate/fsdp.yaml" in container.command
    limits = container.resources.limits
    assert limits[K8S_GPU_RESOURCE] == "2" and parse_quantity(limits["memory"]) == 128 * 1024**3
    assert container.resources.requests == {"cpu": "16", "memory": "128Gi"}
    assert [source.secret_ref.name for source in container.env_from] == ["twin-trainer"]
    by_name = {var.name: var for var in container.env}
    ref = by_name["HF_TOKEN"].value_from.secret_key_ref
    assert (ref.name, ref.key, by_name["HF_TOKEN"].value) == ("hugging-face", "token", None)
    assert by_name["TWIN_HOME"].value == "/data/twin" and "DAGSTER_PIPES_CONTEXT" in by_name
    assert "WANDB_API_KEY" not in by_name  # comes from the twin-trainer Secret, by reference
    mounts = {m.mount_path: m for m in container.volume_mounts}
    volumes = {v.name: v for v in spec.volumes}
    assert set(volumes) == {m.name for m in container.volume_mounts}
    assert volumes[mounts["/data/twin"].name].persistent_volume_claim.claim_name == "twin-home"
    assert mounts["/models"].read_only and volumes[mounts["/models"].name].persistent_volume_claim
    assert volumes[mounts["/dev/shm"].name].empty_dir.medium == "Memory"
    assert spec.service_account_name == "twin-trainer" and spec.restart_policy == "Never"
    assert spec.node_selector == {"nvidia.com/gpu.product": "NVIDIA-H200"}
    assert [t.key for t in spec.tolerations] == [K8S_GPU_RESOURCE]
    assert pod.metadata.labels["app.kubernetes.io/name"] == "twin-trainer"


def test_k8s_gpus_follow_the_processes_and_bad_references_are_refused(
    environ: dict[str, str],
) -> None:
    _, one = k8s_launcher(num_processes=1, k8s_shm_size="").k8s_run_args(["x"], environ)
    assert one["containers"][0]["resources"]["limits"] == {
        K8S_GPU_RESOURCE: "1",
        "cpu": "16",
        "memory": "128Gi",
    }
    assert one["volumes"][-1]["name"] != "dshm"
    cpu_only = k8s_pod_spec(image="i", command=["x"], gpus=0, tolerations=[])
    assert cpu_only["containers"][0]["resources"] == {"limits": {}}
    with pytest.raises(ValueError, match="claim-name:/mount/path"):
        k8s_pod_spec(image="i", command=["x"], gpus=1, volumes=["Not_A_Claim:/data"])
    with pytest.raises(ValueError, match="secret-name/key"):
        k8s_pod_spec(image="i", command=["x"], gpus=1, secret_env={"HF_TOKEN": SECRETS["HF_TOKEN"]})


def test_k8s_example_manifests_grant_what_pipes_uses() -> None:
    """deploy/k8s/trainer.yaml maps onto the kubernetes models; the Role allows what
    PipesK8sClient calls: create, read and delete pods, read their logs."""
    from kubernetes.client import ApiClient

    api = ApiClient()
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy/k8s/trainer.yaml").read_text()) if d]
    kinds = {}
    for doc in docs:
        model = api.deserialize(SimpleNamespace(data=json.dumps(doc)), f"V1{doc['kind']}")
        kinds[doc["kind"], doc["metadata"]["name"]] = model
    role = kinds["Role", "twin-trainer-launcher"]
    verbs = {(res, verb) for rule in role.rules for res in rule.resources for verb in rule.verbs}
    assert {("pods", v) for v in ("create", "get", "delete")} | {("pods/log", "get")} <= verbs
    binding = kinds["RoleBinding", "twin-trainer-launcher"]
    assert binding.subjects[0].name == "twin-dagster"
    assert kinds["PersistentVolumeClaim", "twin-home"].spec.access_modes == ["ReadWriteMany"]
    assert ("ServiceAccount", k8s_launcher().k8s_service_account) in kinds


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_accelerate_resolves_the_command_line(strategy: str) -> None:
    """accelerate's own parser and launcher settle the command as intended: the strategy from
    the committed config, the counts from the launcher, multi-node flags for torchrun."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import prepare_multi_gpu_env

    command = trainer_command(
        "sft",
        4,
        strategy=strategy,  # type: ignore[arg-type]
        num_machines=2,
        machine_rank=1,
        main_process_ip="10.0.0.5",
    )
    assert command[:2] == ["accelerate", "launch"] and command[-2:] == MODULE
    args, config, _ = _validate_launch_command(launch_command_parser().parse_args(command[2:]))
    assert args.module and args.training_script == "twin_platform.training.sft"
    assert (args.num_processes, args.num_machines, args.machine_rank) == (8, 2, 1)
    assert args.main_process_ip == "10.0.0.5" and args.main_process_port == 29500
    assert config.mixed_precision == "no"  # the trainer's TrainingArguments decide bf16
    env = prepare_multi_gpu_env(args)
    torchrun = (int(args.nnodes), int(args.nproc_per_node), args.node_rank)
    assert torchrun == (2, 4, 1)
    if strategy == "ddp":
        assert args.multi_gpu and not args.use_fsdp and "ACCELERATE_USE_FSDP" not in env
    else:
        assert args.use_fsdp and not args.multi_gpu
        assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
        assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
        assert env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"  # resume and merge as on one GPU


def test_distributed_config_is_checked() -> None:
    assert trainer_command("sft", 1, strategy="fsdp") == ["python", *MODULE]
    single = trainer_command("dpo", 2)
    assert "--main_process_ip" not in single and single[-1] == "twin_platform.training.dpo"
    with pytest.raises(ValueError, match="main_process_ip"):
        DistributedConfig(num_processes=8, num_machines=2)
    with pytest.raises(ValueError, match="machine_rank"):
        DistributedConfig(num_machines=2, machine_rank=2, main_process_ip="h")
    for name in ("ddp", "fsdp"):
        config = yaml.safe_load((ROOT / f"deploy/accelerate/{name}.yaml").read_text())
        assert config["distributed_type"] == {"ddp": "MULTI_GPU", "fsdp": "FSDP"}[name]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_process_ddp_run_on_cpu(
    tiny_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The subprocess launcher's own DDP command line, two processes on CPU (gloo): one training
    whose steps see both processes' batches, one registered model."""
    from test_training import instruction_rows, tiny_config, write_jsonl

    from twin_platform.registry import ModelRegistry

    write_jsonl(tmp_path / "data" / "train.jsonl", instruction_rows())
    config = tiny_config("sft", tiny_base, tmp_path / "data", tmp_path / "run", max_steps=3)
    (tmp_path / "run.json").write_text(config.to_json())
    command = TrainingLauncher(num_processes=2).trainer_command("sft", container=False)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [*command, "--config", str(tmp_path / "run.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    batch = config.hyperparameters.per_device_train_batch_size
    assert saved["metrics"]["steps"] == 3
    history = [e for e in saved["log_history"] if "loss" in e]
    assert history[0]["epoch"] == pytest.approx(2 * batch / 16)  # two processes' batches a step
    assert len(ModelRegistry(config.registry).versions("twin")) == 1  # type: ignore[arg-type]
