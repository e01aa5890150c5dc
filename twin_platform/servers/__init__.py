"""The platform's servers, started on demand and shared by every process.

`postgres_uri()` and `mongodb_uri()` are the only entry points other code needs: they return the
external server's URL when `DATABASE_URL` / `MONGODB_URI` are set, otherwise they start (or find) the
embedded server under `TWIN_HOME`. The Postgres schema is migrated on first use in each process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from twin_platform.servers import mongo, postgres
from twin_platform.servers.common import ServiceError, redact
from twin_platform.settings import Settings
from twin_platform.storage import warehouse
from twin_platform.storage.postgres import migrate

__all__ = ["ServiceError", "ServiceStatus", "down", "mongodb_uri", "postgres_uri", "status", "up"]

_ready: set[str] = set()  # URIs already migrated/indexed by this process


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: Literal["running", "stopped", "external", "unreachable"]
    uri: str | None
    detail: str = ""


def postgres_uri(settings: Settings) -> str:
    if settings.database_url:
        uri = settings.database_url
        postgres.check_connection(uri)
    else:
        uri = postgres.start_embedded(settings.postgres_dir, settings.postgres_shared_buffers)
    if uri not in _ready:
        migrate(uri)
        _ready.add(uri)
    return uri


def mongodb_uri(settings: Settings) -> str:
    if settings.mongodb_uri:
        uri = settings.mongodb_uri
        mongo.ping(uri)
    else:
        uri = mongo.start_embedded(settings.mongo_dir, settings.run_dir, settings.mongo_port)
    if uri not in _ready:
        warehouse.ensure_indexes(warehouse.connect(uri, settings.mongodb_database))
        _ready.add(uri)
    return uri


def up(settings: Settings) -> list[ServiceStatus]:
    postgres_uri(settings)
    mongodb_uri(settings)
    return status(settings)


def down(settings: Settings) -> list[str]:
    """Stop the embedded servers (external ones are left alone). Data stays in TWIN_HOME."""
    stopped = []
    if not settings.database_url and postgres.stop_embedded(settings.postgres_dir):
        stopped.append("postgres")
    if not settings.mongodb_uri and mongo.stop_embedded(settings.run_dir):
        stopped.append("mongodb")
    _ready.clear()
    return stopped


def status(settings: Settings) -> list[ServiceStatus]:
    return [_postgres_status(settings), _mongo_status(settings)]


def _postgres_status(settings: Settings) -> ServiceStatus:
    if settings.database_url:
        try:
            version = postgres.check_connection(settings.database_url)
        except ServiceError as exc:
            return ServiceStatus("postgres", "unreachable", redact(settings.database_url), str(exc))
        return ServiceStatus(
            "postgres", "external", redact(settings.database_url), f"PostgreSQL {version}"
        )
    uri = postgres.embedded_uri(settings.postgres_dir)
    if uri is None:
        return ServiceStatus("postgres", "stopped", None, f"data in {settings.postgres_dir}")
    return ServiceStatus("postgres", "running", uri, f"PostgreSQL {postgres.check_connection(uri)}")


def _mongo_status(settings: Settings) -> ServiceStatus:
    if settings.mongodb_uri:
        try:
            mongo.ping(settings.mongodb_uri)
        except ServiceError as exc:
            return ServiceStatus("mongodb", "unreachable", redact(settings.mongodb_uri), str(exc))
        return ServiceStatus("mongodb", "external", redact(settings.mongodb_uri))
    uri = mongo.embedded_uri(settings.mongo_dir, settings.run_dir)
    if uri is None:
        return ServiceStatus("mongodb", "stopped", None, f"data in {settings.mongo_dir}")
    return ServiceStatus("mongodb", "running", uri, "nx-27017")
