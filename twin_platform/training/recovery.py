"""What keeps a training run correct across crashes: the checkpoint to resume from, one trainer per
run folder, and no orphan trainers.

A run's folder is keyed by its inputs and config (`config.plan_run`), so the retry of a crashed run
finds the crashed run's checkpoints. Three things can still go wrong, and are handled here:

- The Trainer writes `checkpoint-N/` file by file and `trainer_state.json` last; a kill in between
  leaves a folder that looks like the newest checkpoint but cannot be loaded. The newest folder
  with a readable `trainer_state.json` is the one to resume from; newer partial ones are removed.
- The run worker that launched a trainer subprocess can die (OOM killer, SIGKILL, a lost node)
  while the trainer trains on, orphaned. The trainer watches the launcher's pid and exits with it.
- A trainer in a container outlives its launcher by design (Docker, Kubernetes, ECS). A lock on
  the run folder makes the retry wait for it and then reuse its result, instead of training beside
  it into the same checkpoints.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

TRAINER_STATE = "trainer_state.json"
LOCK_FILE = ".lock"
# The pid of the process that launched the trainer (the Dagster run worker): the trainer exits
# when it dies, instead of training on as an orphan beside the retry of the same run.
PARENT_PID_ENV = "TWIN_TRAINER_PARENT_PID"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class _Logs(Protocol):
    def info(self, message: str) -> None: ...


def _is_complete(folder: Path) -> bool:
    try:
        json.loads((folder / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def last_complete_checkpoint(folder: Path, clean: bool = False) -> Path | None:
    """The newest `checkpoint-N` whose trainer state was written (the Trainer's last file), or None.

    With `clean`, newer partial checkpoints are deleted (only one process of a run should)."""
    if not folder.is_dir():
        return None
    numbered = sorted(
        (int(match.group(1)), path)
        for path in folder.iterdir()
        if path.is_dir() and (match := _CHECKPOINT.match(path.name))
    )
    for _, path in reversed(numbered):
        if _is_complete(path):
            return path
        if clean:
            shutil.rmtree(path, ignore_errors=True)
    return None


@contextlib.contextmanager
def run_lock(output_dir: Path, logs: _Logs, main_process: bool | None = None) -> Iterator[None]:
    """Hold the run folder's lock while training; a second trainer of the same run waits for it.

    Only the main process locks (the others of an `accelerate launch` follow it). The OS drops the
    lock when its holder dies, however it dies."""
    if main_process is None:
        main_process = os.environ.get("RANK", "0") == "0"
    if not main_process:
        yield
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    with (output_dir / LOCK_FILE).open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logs.info(f"another trainer is running in {output_dir}: waiting for it to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _alive(pid: int, started: float) -> bool:
    import psutil

    try:
        process = psutil.Process(pid)
        return process.create_time() == started and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def exit_with(pid: int, poll_s: float = 0.25) -> threading.Thread:
    """Exit this process (code 137, as if killed) once process `pid` is gone: a daemon thread.

    Under `accelerate launch` every rank watches the same launcher, so all stop together and
    accelerate's own process exits after them. A launcher already gone: exit now."""
    import psutil

    try:
        started = psutil.Process(pid).create_time()
    except psutil.Error:
        os._exit(137)

    def watch() -> None:
        while _alive(pid, started):
            time.sleep(poll_s)
        os._exit(137)

    thread = threading.Thread(target=watch, name="exit-with-launcher", daemon=True)
    thread.start()
    return thread
