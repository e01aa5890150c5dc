"""Crashes survived: the run worker is SIGKILLed in the middle of a step, and the retry completes.

The two kill tests are slow (opt-in: `pytest -m slow tests/test_crash_recovery.py`): each starts
two run workers and runs most of a step twice, 2-3 minutes on two busy cores. The pieces they rely
on are tested fast below them: resuming past a checkpoint cut short, trainers that exit with their
launcher, one trainer per run folder.

Each run is `dagster asset materialize` in its own process (the run worker, in-process executor),
against an instance in a throwaway DAGSTER_HOME. "In the middle" is observed, not timed: the test
polls for rows appearing in the feature store, or for a complete checkpoint on disk, and kills then.

- `embedded_chunks`: embeddings are written in small transactions; after the kill and the retry,
  every chunk of the author has exactly one embedding, and the retry embedded only what was missing.
- `sft_model`: the trainer (a Pipes subprocess of the worker) exits by itself when its worker dies;
  the retry resumes from the newest complete checkpoint (steps before it are not trained again) and
  registers one model.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import psutil
import pytest

from twin_platform.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CRASH_AUTHOR = "crash-ada"
CRASH_DATABASE = "crash_recovery"
TRAIN_AUTHOR = "Ada"


def worker_env(twin_home: Path, dagster_home: Path, **extra: str) -> dict[str, str]:
    """A clean environment for the run worker: no `.env`, no developer settings."""
    return {
        "PATH": f"{BIN}:{STANDARD_PATH}",
        "HOME": os.environ.get("HOME", str(twin_home)),
        "TWIN_ENV_FILE": "",
        "TWIN_HOME": str(twin_home),
        "TWIN_MONGO_PORT": os.environ["TWIN_MONGO_PORT"],
        "DAGSTER_HOME": str(dagster_home),
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "DEEPEVAL_TELEMETRY_OPT_OUT": "YES",
        **extra,
    }


def dagster_home(path: Path, partitions: list[str]) -> Path:
    """A Dagster instance on disk (SQLite) with the author partitions the runs need."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(path)) as instance:
        instance.add_dynamic_partitions("authors", partitions)
    return path


def start_worker(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    handle = log.open("ab")
    return subprocess.Popen(
        [str(BIN / "dagster"), "asset", "materialize", *args],
        cwd=cwd,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )


def wait_until(
    condition: Callable[[], Any], worker: subprocess.Popen, log: Path, timeout_s: float = 300
) -> Any:
    """Poll `condition` until it holds; the worker ending first is a failure quoting its log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if worker.poll() is not None:
            pytest.fail(f"the run ended before the kill point:\n{log.read_text()[-4000:]}")
        time.sleep(0.02)
    worker.kill()
    pytest.fail(f"no kill point within {timeout_s} s:\n{log.read_text()[-4000:]}")


def sigkill(worker: subprocess.Popen) -> list[psutil.Process]:
    """SIGKILL the run worker alone (not its process group), as the OOM killer would; returns
    the children it leaves behind."""
    children = psutil.Process(worker.pid).children(recursive=True)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)
    return children


def finish(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> str:
    worker = start_worker(args, env, cwd, log)
    worker.wait(timeout=600)
    output = log.read_text()
    assert worker.returncode == 0, output[-4000:]
    assert "RUN_SUCCESS" in output
    return output


def latest_metadata(home: Path, asset: str, partition: str) -> dict[str, Any]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]),
            limit=1,
        ).records
    assert records, f"no materialization of {asset} {partition}"
    metadata = records[0].asset_materialization.metadata  # type: ignore[union-attr]
    return {key: value.value for key, value in metadata.items()}


# -- embedded_chunks --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crash_chunks(
    mongodb_url: str, postgres_url: str, instance: dg.DagsterInstance
) -> tuple[str, int]:
    """The sample corpus as a separate author in its own warehouse database, cleaned and chunked
    (not embedded) by the real assets; returns the author and its chunk count."""
    from assets.features import chunks, cleaned_documents
    from assets.partitions import add_authors
    from resources import (
        EmbeddingModelResource,
        PostgresResource,
        SettingsResource,
        WarehouseResource,
    )
    from twin_platform.collection.ingest import ingest_author
    from twin_platform.collection.sources import SAMPLE_AUTHOR, SAMPLE_AUTHORS_FILE, load_sources
    from twin_platform.storage import postgres
    from twin_platform.storage.warehouse import connect

    sample = load_sources(SAMPLE_AUTHORS_FILE).get(SAMPLE_AUTHOR)
    assert sample is not None
    author = sample.model_copy(update={"name": CRASH_AUTHOR})
    report = ingest_author(author, connect(mongodb_url, CRASH_DATABASE), load_settings())
    assert report.total_failed == 0, report.failures
    with postgres.connect(postgres_url) as conn:  # a rerun of the module starts from scratch
        conn.execute("DELETE FROM cleaned_documents WHERE author = %s", (CRASH_AUTHOR,))
    add_authors(instance, [CRASH_AUTHOR])
    result = dg.materialize(
        [cleaned_documents, chunks],
        partition_key=CRASH_AUTHOR,
        instance=instance,
        resources={
            "settings": SettingsResource(),
            "postgres": PostgresResource(),
            "warehouse": WarehouseResource(database=CRASH_DATABASE),
            "embedding_model": EmbeddingModelResource(),
        },
    )
    assert result.success
    return CRASH_AUTHOR, store_counts(postgres_url, CRASH_AUTHOR)["chunks"]


def store_counts(postgres_url: str, author: str) -> dict[str, int]:
    from twin_platform.storage import postgres

    with postgres.connect(postgres_url) as conn:
        row = conn.execute(
            """
            SELECT
              (SELECT count(*) FROM chunks WHERE author = %(a)s),
              (SELECT count(*) FROM embedded_chunks WHERE author = %(a)s),
              (SELECT count(DISTINCT chunk_id) FROM embedded_chunks WHERE author = %(a)s),
              (SELECT count(*) FROM chunks c WHERE c.author = %(a)s AND NOT EXISTS
                 (SELECT 1 FROM embedded_chunks e WHERE e.chunk_id = c.chunk_id)),
              (SELECT count(*) FROM embedded_chunks e WHERE e.author = %(a)s AND NOT EXISTS
                 (SELECT 1 FROM chunks c WHERE c.chunk_id = e.chunk_id)),
              (SELECT count(*) FROM embedded_chunks WHERE author = %(a)s
                 AND abs(vector_norm(embedding) - 1) > 1e-3)
            """,
            {"a": author},
        ).fetchone()
    assert row is not None
    keys = ("chunks", "embedded", "distinct", "missing", "orphans", "not_unit")
    return dict(zip(keys, (int(v) for v in row), strict=True))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kill_in_the_middle_of_embedded_chunks(
    crash_chunks: tuple[str, int], postgres_url: str, twin_home: Path, tmp_path: Path
) -> None:
    author, total = crash_chunks
    assert total >= 40, "the corpus is too small to be stopped in the middle"
    assert store_counts(postgres_url, author)["embedded"] == 0
    home = dagster_home(tmp_path / "dagster", [author])
    env = worker_env(
        twin_home,
        home,
        TWIN_MONGODB_DATABASE=CRASH_DATABASE,
        TWIN_EMBEDDING_BACKEND="torch",  # no ONNX export in the worker: it is not under test
    )
    args = [
        "-m",
        "definitions",
        "--select",
        # With `chunks` (unchanged: a no-op), as the feature checks' op checks both assets and
        # cannot run for one alone.
        "chunks,embedded_chunks",
        "--partition",
        author,
        "--config-json",
        json.dumps({"ops": {"embedded_chunks": {"config": {"batch_size": 16}}}}),
    ]
    log = tmp_path / "worker.log"
    worker = start_worker(args, env, tmp_path, log)

    def halfway() -> int:
        embedded = store_counts(postgres_url, author)["embedded"]
        return embedded if 0 < embedded < total else 0

    wait_until(halfway, worker, log)
    sigkill(worker)
    before = store_counts(postgres_url, author)
    assert 0 < before["embedded"] < total, before  # killed in the middle, some batches committed
    assert before["distinct"] == before["embedded"] and before["not_unit"] == 0

    finish(args, env, tmp_path, tmp_path / "retry.log")
    after = store_counts(postgres_url, author)
    assert after == {
        "chunks": total,
        "embedded": total,
        "distinct": total,
        "missing": 0,
        "orphans": 0,
        "not_unit": 0,
    }
    metadata = latest_metadata(home, "embedded_chunks", author)
    assert metadata["embedded"] == total - before["embedded"]  # only what the crash left undone


# -- training ----------------------------------------------------------------------------------------
DEFS = """
from pathlib import Path

import dagster as dg

from assets.partitions import authors
from assets.training import sft_model
from resources import SettingsResource
from resources.training import TrainingLauncher
from twin_platform.datasets.artifact import DatasetArtifact
from twin_platform.models.base_model import BaseModelInfo


@dg.asset(name="base_model", partitions_def=authors)
def tiny_base() -> BaseModelInfo:
    return BaseModelInfo("tiny", Path({base!r}), 3_000_000, "LlamaForCausalLM")


@dg.asset(name="instruction_dataset", partitions_def=authors)
def dataset() -> DatasetArtifact:
    return DatasetArtifact("instruction", {author!r}, "v-crash", Path({data!r}))


defs = dg.Definitions(
    assets=[tiny_base, dataset, sft_model],
    resources={{"settings": SettingsResource(), "training": TrainingLauncher()}},
    executor=dg.in_process_executor,
)
"""


def complete_checkpoints(runs: Path) -> list[int]:
    """Steps of the checkpoints whose trainer state is written (the Trainer's last file)."""
    return sorted(
        int(state.parent.name.split("-")[1])
        for state in runs.glob("sft/*/*/checkpoints/checkpoint-*/trainer_state.json")
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kill_in_the_middle_of_training_resumes_from_the_last_checkpoint(
    tiny_base: Path, tmp_path: Path
) -> None:
    from test_training import instruction_rows, write_jsonl

    from twin_platform.registry import ModelRegistry, model_name
    from twin_platform.training.config import profile

    write_jsonl(tmp_path / "data" / "train.jsonl", instruction_rows())
    (tmp_path / "crash_defs.py").write_text(
        DEFS.format(base=str(tiny_base), data=str(tmp_path / "data"), author=TRAIN_AUTHOR)
    )
    quick = profile("quick", "sft")
    steps, every = quick.max_steps, quick.save_steps  # 24 steps, a checkpoint every 8
    twin_home = tmp_path / "twin"  # training needs no server: a home of its own
    home = dagster_home(tmp_path / "dagster", [TRAIN_AUTHOR])
    env = worker_env(twin_home, home)
    args = [
        "-f",
        "crash_defs.py",
        "--select",
        "base_model,instruction_dataset,sft_model",
        "--partition",
        TRAIN_AUTHOR,
        "--config-json",
        json.dumps({"ops": {"sft_model": {"config": {"profile": "quick", "learning_rate": 0.01}}}}),
    ]
    log = tmp_path / "worker.log"
    worker = start_worker(args, env, tmp_path, log)
    runs = twin_home / "training"
    wait_until(lambda: complete_checkpoints(runs), worker, log)
    trainers = sigkill(worker)
    assert trainers, "the trainer runs in a subprocess of the run worker"
    _, alive = psutil.wait_procs(trainers, timeout=30)  # they notice and exit on their own
    assert not alive, f"orphaned trainers still running: {alive}"
    assert not list(runs.glob("sft/*/*/result.json")), "killed before the run finished"
    resumable = max(complete_checkpoints(runs))
    assert every <= resumable < steps

    output = finish(args, env, tmp_path, tmp_path / "retry.log")
    [result_file] = runs.glob("sft/*/*/result.json")
    result = json.loads(result_file.read_text())
    assert result["metrics"]["resumed_from"] == f"checkpoint-{resumable}"
    assert result["metrics"]["steps"] == steps
    assert f"resuming from checkpoint-{resumable}" in output
    assert f"step {resumable + 1}/{steps}:" in output and f"step {resumable}/{steps}:" not in output
    logged = [e["step"] for e in result["log_history"] if "loss" in e]
    assert logged == list(range(1, steps + 1))  # the first run's history carried over, once
    registry = ModelRegistry(str(twin_home / "models"))
    assert len(registry.versions(model_name(TRAIN_AUTHOR))) == 1  # the killed run registered none


def test_resume_skips_a_checkpoint_cut_short(tiny_base: Path, tmp_path: Path) -> None:
    """A kill while the Trainer writes checkpoint-N leaves the folder without trainer_state.json
    (written last); the rerun resumes from the newest complete checkpoint and removes the other."""
    from test_training import instruction_rows, tiny_config, write_jsonl
    from transformers import TrainerCallback
    from transformers.trainer_utils import get_last_checkpoint

    from twin_platform.training import sft

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            if state.global_step == 3:
                raise KeyboardInterrupt("simulated kill")

    write_jsonl(tmp_path / "data" / "train.jsonl", instruction_rows())
    config = tiny_config(
        "sft", tiny_base, tmp_path / "data", tmp_path / "run", max_steps=5, save_steps=2
    )
    with pytest.raises(KeyboardInterrupt):
        sft.train(config, callbacks=[Crash()])
    checkpoints = tmp_path / "run" / "checkpoints"
    cut_short = checkpoints / "checkpoint-4"
    shutil.copytree(checkpoints / "checkpoint-2", cut_short)
    (cut_short / "trainer_state.json").unlink()  # the kill came before the Trainer's last file
    assert get_last_checkpoint(str(checkpoints)) == str(cut_short)  # what resumed before

    result = sft.train(config)
    assert result.metrics["resumed_from"] == "checkpoint-2" and result.metrics["steps"] == 5
    assert all((c / "trainer_state.json").is_file() for c in checkpoints.glob("checkpoint-*"))


def test_trainer_exits_when_its_launcher_dies(tmp_path: Path) -> None:
    """A trainer whose run worker is SIGKILLed stops within a second, instead of training on
    beside the retry: the launcher passes its pid, the trainer watches it."""
    trainer = (
        "import os, sys, time\n"
        "from twin_platform.training.recovery import exit_with\n"
        "exit_with(os.getppid())\n"
        "print('watching', flush=True)\n"
        "time.sleep(120)\n"
    )
    launcher = (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', {trainer!r}])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", launcher], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert worker.stdout is not None
    child = psutil.Process(int(worker.stdout.readline()))
    assert worker.stdout.readline().strip() == "watching"
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    _, alive = psutil.wait_procs([child], timeout=5)
    assert not alive, "the trainer outlived its launcher"


def test_a_second_trainer_of_the_same_run_waits_for_the_first(tmp_path: Path) -> None:
    """Containers outlive a killed run worker: the retry's trainer waits for the orphan to finish
    (then reuses its result) instead of training into the same checkpoints at the same time."""
    from twin_platform.training.recovery import run_lock

    class Logs:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def info(self, message: str) -> None:
            self.lines.append(message)

    order: list[str] = []
    holding = threading.Event()

    def first() -> None:
        with run_lock(tmp_path / "run", Logs(), main_process=True):
            holding.set()
            time.sleep(1.0)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    holding.wait(timeout=10)
    logs = Logs()
    with run_lock(tmp_path / "run", logs, main_process=True):
        order.append("second starts")
    thread.join()
    assert order == ["first done", "second starts"]
    assert any("another trainer is running" in line for line in logs.lines)
    with run_lock(tmp_path / "run", logs, main_process=False):  # other ranks never lock
        pass
