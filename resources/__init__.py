"""Dagster resources: thin, typed handles on the stores. Unset URLs mean the embedded servers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import dagster as dg
import psycopg
from pymongo.database import Database

from resources.io_managers import DatasetIOManager
from resources.training import TrainingLauncher
from twin_platform import services
from twin_platform.settings import Settings, load_settings
from twin_platform.storage import postgres as pg_store
from twin_platform.storage import warehouse

if TYPE_CHECKING:
    from twin_platform.features.embedding import Embedder


def optional_env(name: str) -> dg.EnvVar | None:
    """EnvVar when the variable is set (shown as such in the UI), else None for the default."""
    return dg.EnvVar(name) if os.environ.get(name) else None


class PostgresResource(dg.ConfigurableResource):
    """The feature store (Postgres + pgvector). No `database_url`: the embedded server."""

    database_url: str | None = None

    def settings(self) -> Settings:
        return (
            load_settings(database_url=self.database_url) if self.database_url else load_settings()
        )

    def uri(self) -> str:
        """Starts the embedded server if needed and migrates the schema (once per process)."""
        return services.postgres_uri(self.settings())

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        with pg_store.connect(self.uri()) as conn:
            yield conn


class WarehouseResource(dg.ConfigurableResource):
    """The document warehouse (MongoDB protocol). No `mongodb_uri`: the embedded nx-27017 server."""

    mongodb_uri: str | None = None
    database: str = "twin"

    def uri(self) -> str:
        overrides = {"mongodb_uri": self.mongodb_uri} if self.mongodb_uri else {}
        return services.mongodb_uri(load_settings(mongodb_database=self.database, **overrides))

    def db(self) -> Database:
        return warehouse.connect(self.uri(), self.database)


class EmbeddingModelResource(dg.ConfigurableResource):
    """The sentence-embedding model of the feature pipeline; unset fields come from TWIN_ settings."""

    model: str | None = None
    device: str | None = None
    batch_size: int | None = None

    def load(self) -> Embedder:
        """Loaded once per process and shared (about 20 s the first time on 2 cores)."""
        from twin_platform.features.embedding import load_embedder

        settings = load_settings()
        return load_embedder(
            self.model or settings.embedding_model,
            self.device or settings.embedding_device,
            self.batch_size or settings.embedding_batch_size,
        )


def build_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "postgres": PostgresResource(database_url=optional_env("DATABASE_URL")),
        "embedding_model": EmbeddingModelResource(),
        "dataset_io_manager": DatasetIOManager(
            s3_bucket=optional_env("TWIN_DATASETS_S3_BUCKET"),
            s3_endpoint_url=optional_env("TWIN_DATASETS_S3_ENDPOINT_URL"),
        ),
        "warehouse": WarehouseResource(
            mongodb_uri=optional_env("MONGODB_URI"),
            database=os.environ.get("TWIN_MONGODB_DATABASE", "twin"),
        ),
        "training": TrainingLauncher(launcher=load_settings().training_launcher),  # type: ignore[arg-type]
    }
