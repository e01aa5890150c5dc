"""Background processes the platform owns: started detached, tracked by pid file, stopped cleanly.

Every process (CLI, webserver, daemon, run workers, API, tests) shares the same pid files under
`TWIN_HOME/run`, so a service started by one is reused by all, and a dead one is detected and replaced.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from twin_platform.fsutil import write_atomic
from twin_platform.servers.common import ServiceError


@dataclass(frozen=True)
class ProcessRecord:
    """What a pid file holds: enough to recognise our process even if its pid is reused."""

    pid: int
    create_time: float
    command: list[str]
    info: dict[str, str | int | float]

    def is_alive(self) -> bool:
        try:
            proc = psutil.Process(self.pid)
            return abs(proc.create_time() - self.create_time) < 1 and proc.status() != "zombie"
        except psutil.Error:
            return False


def ensure_writable(directory: Path) -> None:
    """Fail early, in one line, when state cannot be written (e.g. a read-only TWIN_HOME)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ServiceError(
            f"{directory} is not writable ({exc.strerror}): set TWIN_HOME to a writable directory."
        ) from exc


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Serialise starts and stops across processes; the OS drops the lock if its holder dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_record(pid_file: Path, remove_stale: bool = True) -> ProcessRecord | None:
    """The live process behind a pid file, or None; a stale file is removed, unless the caller
    holds no lock (`remove_stale=False`): it might remove a file just rewritten for a new one."""
    try:
        record = ProcessRecord(**json.loads(pid_file.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        if remove_stale:
            pid_file.unlink(missing_ok=True)
        return None
    if not record.is_alive():
        if remove_stale:
            pid_file.unlink(missing_ok=True)
        return None
    return record


def spawn(
    command: Sequence[str],
    pid_file: Path,
    log_file: Path,
    env: dict[str, str] | None = None,
    info: dict[str, str | int | float] | None = None,
) -> ProcessRecord:
    """Start a detached process (own session, output to a log file) and record it."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    record = ProcessRecord(
        pid=proc.pid,
        create_time=psutil.Process(proc.pid).create_time(),
        command=list(command),
        info=info or {},
    )
    write_atomic(pid_file, json.dumps(record.__dict__))
    return record


def terminate(record: ProcessRecord, timeout: float = 15.0) -> None:
    """SIGINT first (some servers ignore SIGTERM), then SIGTERM, then SIGKILL. Each is followed by
    SIGCONT: a stopped (frozen) process acts on no signal but SIGKILL until it is continued."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(record.pid, sig)
            os.killpg(record.pid, signal.SIGCONT)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(record.pid, sig)
            os.kill(record.pid, signal.SIGCONT)
        deadline = time.monotonic() + timeout / 3
        while time.monotonic() < deadline:
            if not record.is_alive():
                return
            time.sleep(0.1)
    if record.is_alive():
        raise ServiceError(f"process {record.pid} did not stop; kill it by hand.")


def tail(log_file: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """No socket listens on it. SO_REUSEADDR, as servers set it: connections of a server that just
    stopped linger in TIME_WAIT for a minute and must not make its port look taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
