"""Postgres: the one way to connect (a connection or a pool, both with pgvector's types), and migrations.

Migrations are the numbered `.sql` files in `twin_platform/storage/migrations`. Each runs once, in its
own transaction, under an advisory lock, so any number of processes may call `migrate` at start.
Connections are autocommit: every write function opens its own transaction, so a failure leaves the
tables as they were before the call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool

MIGRATIONS_PACKAGE = "twin_platform.storage.migrations"
_MIGRATION_LOCK_ID = 0x7477696E  # "twin"


@contextmanager
def connect(url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection that knows pgvector's types."""
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        yield conn


@contextmanager
def reconnect(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """Another autocommit connection to `conn`'s server, as the same user (password included), for
    work beside it: watching a long statement's progress, reading and writing in parallel."""
    conninfo = make_conninfo(conn.info.dsn, password=conn.info.password)
    with connect(conninfo) as other:
        yield other


def open_pool(
    url: str, max_size: int = 16, configure: Callable[[psycopg.Connection], None] | None = None
) -> ConnectionPool:
    """A pool of connections like `connect`'s; `configure` runs once on each new connection."""

    def setup(conn: psycopg.Connection) -> None:
        register_vector(conn)
        if configure is not None:
            configure(conn)

    pool = ConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        configure=setup,
        kwargs={"autocommit": True},
        open=True,
    )
    pool.wait(timeout=30)
    return pool


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) pairs in order, read from the package so an installed wheel has them too."""
    folder = resources.files(MIGRATIONS_PACKAGE)
    files = sorted(f for f in folder.iterdir() if f.name.endswith(".sql"))
    return [(f.name.removesuffix(".sql"), f.read_text()) for f in files]


def migrate(url: str) -> list[str]:
    """Apply pending migrations; return the versions applied now (empty when up to date)."""
    applied_now: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK_ID,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, sql in migration_files():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(sql)  # type: ignore[arg-type]
                    conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                applied_now.append(version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK_ID,))
    return applied_now


def describe(conn: psycopg.Connection) -> dict[str, Any]:
    """What the schema holds now: migrations, tables with row estimates, extension versions."""
    migrations = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    tables = dict(
        conn.execute(
            "SELECT relname, GREATEST(reltuples, 0)::bigint FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY relname"
        ).fetchall()
    )
    extensions = dict(conn.execute("SELECT extname, extversion FROM pg_extension").fetchall())
    version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    return {
        "server_version": version,
        "migrations": migrations,
        "tables": tables,
        "extensions": extensions,
    }
