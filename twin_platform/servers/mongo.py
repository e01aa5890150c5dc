"""The MongoDB wire-protocol server: embedded `nx-27017`, or `MONGODB_URI` for a real MongoDB.

Only standard pymongo calls go through it, so a real MongoDB drops in unchanged.

The embedded server is shared by every process, so a slow answer is no reason to touch it: a
process replaces it only when it is really dead (its process gone), or when it has not answered
for `unresponsive_s` (default two minutes) and that process is its owner (the one that started
it), or its owner has exited. Anyone else waits, then reports, and never kills a server that
others are writing to.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import psutil
import pymongo
import pymongo.errors

from twin_platform.servers import process
from twin_platform.servers.common import ServiceError, redact

PING_TIMEOUT_MS = 3000
UNRESPONSIVE_S = 120.0


def ping(uri: str, timeout_ms: int = PING_TIMEOUT_MS) -> None:
    """Raise a one-line ServiceError unless a MongoDB-protocol server answers at `uri`."""
    client: pymongo.MongoClient = pymongo.MongoClient(
        uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
    )
    try:
        client.admin.command("ping")
    except pymongo.errors.PyMongoError as exc:
        raise ServiceError(
            f"cannot reach MongoDB at {redact(uri)}: {str(exc).splitlines()[0][:200]}. "
            "Check MONGODB_URI, or unset it to use the embedded server."
        ) from exc
    finally:
        client.close()


def _uri(port: int) -> str:
    return f"mongodb://127.0.0.1:{port}/"


def embedded_uri(data_dir: Path, run_dir: Path) -> str | None:
    """URI of the embedded server if it is running and answering; never starts (nor touches) it."""
    record = process.read_record(run_dir / "mongo.pid", remove_stale=False)
    if record is None:
        return None
    uri = _uri(int(record.info["port"]))
    try:
        ping(uri, timeout_ms=1000)
    except ServiceError:
        return None
    return uri


def start_embedded(
    data_dir: Path, run_dir: Path, preferred_port: int, unresponsive_s: float = UNRESPONSIVE_S
) -> str:
    """Start (or find) the embedded server and return its URI.

    A running server that does not answer is waited for up to `unresponsive_s` (outside the
    start lock, so waiting processes do not queue behind each other), then replaced only by its
    owner (see the module docstring). If the preferred port is taken by some other program, a
    free port is used instead: every process finds the server through its pid file, so the port
    may change safely.
    """
    process.ensure_writable(data_dir)
    process.ensure_writable(run_dir)
    pid_file = run_dir / "mongo.pid"
    seen = process.read_record(pid_file, remove_stale=False)
    if seen is not None and _answers_within(_record_uri(seen), seen, unresponsive_s):
        return _record_uri(seen)
    with process.exclusive_lock(run_dir / "mongo.lock"):
        running = process.read_record(pid_file)
        if running is not None:
            # The one waited for gets a last ping; one started meanwhile gets the full wait.
            patience = 0.0 if running == seen else unresponsive_s
            if _answers_within(_record_uri(running), running, patience):
                return _record_uri(running)
            if running.is_alive():
                _replace_hung(running, unresponsive_s)
            pid_file.unlink(missing_ok=True)
        return _spawn(data_dir, run_dir, preferred_port)


def _record_uri(record: process.ProcessRecord) -> str:
    return _uri(int(record.info["port"]))


def _spawn(data_dir: Path, run_dir: Path, preferred_port: int) -> str:
    """Start a server owned by this process and wait until it answers (under the start lock)."""
    pid_file = run_dir / "mongo.pid"
    port = preferred_port if process.port_is_free(preferred_port) else process.free_port()
    log_file = run_dir / "mongo.log"
    record = process.spawn(
        [
            sys.executable,
            "-m",
            "nx_27017.nx_27017",
            "--data-dir",
            str(data_dir),
            "--host",
            "127.0.0.1",
            "-p",
            str(port),
            "--pid-file",
            str(run_dir / "nx-27017.pid"),
            "--log-file",
            str(log_file),
        ],
        pid_file=pid_file,
        log_file=log_file,
        info={"port": port, **_this_process_as_owner()},
    )
    uri = _uri(port)
    deadline = time.monotonic() + 30
    while True:
        try:
            ping(uri, timeout_ms=500)
            return uri
        except ServiceError:
            if not record.is_alive():
                pid_file.unlink(missing_ok=True)
                raise ServiceError(
                    f"embedded MongoDB exited at start: {process.tail(log_file, 3)} (log: {log_file})"
                ) from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _answers_within(uri: str, record: process.ProcessRecord, seconds: float) -> bool:
    """True once the server answers; False when its process is gone or it stays silent for
    `seconds` (at least one ping is always made)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            ping(uri)
            return True
        except ServiceError:
            left = deadline - time.monotonic()
            if not record.is_alive() or left <= 0:
                return False
            time.sleep(min(1.0, left))


def _this_process_as_owner() -> dict[str, int | float]:
    me = psutil.Process()
    return {"owner_pid": me.pid, "owner_started": me.create_time()}


def _replace_hung(record: process.ProcessRecord, unresponsive_s: float) -> None:
    """Stop a server silent for `unresponsive_s`, if this process owns it or its owner is gone."""
    info = record.info
    owner = process.ProcessRecord(
        int(info.get("owner_pid", 0)), float(info.get("owner_started", 0)), [], {}
    )
    orphaned = "owner_pid" not in info or not owner.is_alive()
    if not orphaned and owner.pid != os.getpid():
        raise ServiceError(
            f"embedded MongoDB (pid {record.pid}) has not answered for {unresponsive_s:g} s; it"
            f" was started by process {owner.pid}, which is still running, so it is left alone."
            " If it is hung, stop it with `twin services down`."
        )
    process.terminate(record)


def stop_embedded(run_dir: Path) -> bool:
    with process.exclusive_lock(run_dir / "mongo.lock"):
        record = process.read_record(run_dir / "mongo.pid")
        if record is None:
            return False
        process.terminate(record)
        (run_dir / "mongo.pid").unlink(missing_ok=True)
        return True
