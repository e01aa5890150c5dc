"""The MongoDB wire-protocol server: embedded `nx-27017`, or `MONGODB_URI` for a real MongoDB.

Only standard pymongo calls go through it, so a real MongoDB drops in unchanged.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pymongo
import pymongo.errors

from twin_platform.servers import process
from twin_platform.servers.common import ServiceError, redact

PING_TIMEOUT_MS = 3000


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
    """URI of the embedded server if it is running and answering; never starts it."""
    record = process.read_record(run_dir / "mongo.pid")
    if record is None:
        return None
    uri = _uri(int(record.info["port"]))
    try:
        ping(uri, timeout_ms=1000)
    except ServiceError:
        return None
    return uri


def start_embedded(data_dir: Path, run_dir: Path, preferred_port: int) -> str:
    """Start (or find) the embedded server and return its URI.

    If the preferred port is taken by some other program, a free port is used instead: every
    process finds the server through its pid file, so the port may change safely.
    """
    process.ensure_writable(data_dir)
    process.ensure_writable(run_dir)
    with process.exclusive_lock(run_dir / "mongo.lock"):
        uri = embedded_uri(data_dir, run_dir)
        if uri:
            return uri
        stale = process.read_record(run_dir / "mongo.pid")
        if stale is not None:  # alive but not answering: a hung server
            process.terminate(stale)
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
            pid_file=run_dir / "mongo.pid",
            log_file=log_file,
            info={"port": port},
        )
        uri = _uri(port)
        deadline = time.monotonic() + 30
        while True:
            try:
                ping(uri, timeout_ms=500)
                return uri
            except ServiceError:
                if not record.is_alive():
                    (run_dir / "mongo.pid").unlink(missing_ok=True)
                    raise ServiceError(
                        f"embedded MongoDB exited at start: {process.tail(log_file, 3)} (log: {log_file})"
                    ) from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def stop_embedded(run_dir: Path) -> bool:
    with process.exclusive_lock(run_dir / "mongo.lock"):
        record = process.read_record(run_dir / "mongo.pid")
        if record is None:
            return False
        process.terminate(record)
        (run_dir / "mongo.pid").unlink(missing_ok=True)
        return True
