"""Dagster resources: thin, typed handles on the stores and the settings, wired in `build_resources`.

Each resource reads what it needs once, in `setup_for_execution`, so a step pays a server start
or a model load at most once and the library below receives plain values.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import dagster as dg
import psycopg
from pydantic import PrivateAttr
from pymongo.database import Database

from resources.io_managers import DatasetIOManager
from resources.training import TrainingLauncher
from twin_platform import servers
from twin_platform.settings import Settings, load_settings
from twin_platform.storage import postgres, warehouse

if TYPE_CHECKING:
    from twin_platform.features.embedding import Embedder, TextEmbedder


def optional_env(name: str) -> dg.EnvVar | None:
    """EnvVar when the variable is set (shown as such in the UI), else None for the default."""
    return dg.EnvVar(name) if os.environ.get(name) else None


class SettingsResource(dg.ConfigurableResource):
    """The platform's settings (TWIN_* environment and `.env`), read once per step."""

    _settings: Settings | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._settings = load_settings()

    @property
    def settings(self) -> Settings:
        if self._settings is None:  # used outside a run (a test calling the asset directly)
            self._settings = load_settings()
        return self._settings


class PostgresResource(dg.ConfigurableResource):
    """The feature store (Postgres + pgvector). No `database_url`: the embedded server.

    The server is started (or found) and the schema migrated once, when the resource is set up.
    """

    database_url: str | None = None
    _uri: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._uri = servers.postgres_uri(self._settings())

    def _settings(self) -> Settings:
        overrides = {"database_url": self.database_url} if self.database_url else {}
        return load_settings(**overrides)

    @property
    def uri(self) -> str:
        if self._uri is None:
            self._uri = servers.postgres_uri(self._settings())
        return self._uri

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """An autocommit connection with pgvector's types."""
        with postgres.connect(self.uri) as conn:
            yield conn


class WarehouseResource(dg.ConfigurableResource):
    """The document warehouse (MongoDB protocol). No `mongodb_uri`: the embedded nx-27017 server."""

    mongodb_uri: str | None = None
    database: str = "twin"
    _uri: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._uri = self._start()

    def _start(self) -> str:
        overrides = {"mongodb_uri": self.mongodb_uri} if self.mongodb_uri else {}
        return servers.mongodb_uri(load_settings(mongodb_database=self.database, **overrides))

    def db(self) -> Database:
        if self._uri is None:
            self._uri = self._start()
        return warehouse.connect(self._uri, self.database)


class EmbeddingModelResource(dg.ConfigurableResource):
    """The sentence-embedding model of the feature pipeline; unset fields come from TWIN_ settings."""

    model: str | None = None
    device: str | None = None
    batch_size: int | None = None
    backend: str | None = None

    @property
    def model_name(self) -> str:
        return self.model or load_settings().embedding_model

    def load(self) -> Embedder:
        """Loaded once per process (about 20 s the first time on 2 cores), then shared."""
        from twin_platform.features.embedding import load_embedder

        settings = load_settings()
        return load_embedder(
            self.model_name,
            self.device or settings.embedding_device,
            self.batch_size or settings.embedding_batch_size,
        )

    def load_for_pipeline(self) -> TextEmbedder:
        """The feature pipeline's bulk encoder (TWIN_EMBEDDING_BACKEND): ONNX Runtime on CPU, torch
        on a GPU (TWIN_EMBEDDING_CUDA_BATCH_SIZE, TWIN_EMBEDDING_CUDA_DTYPE); loaded once a process."""
        from twin_platform.features.encoders import load_pipeline_embedder

        settings = load_settings()
        return load_pipeline_embedder(
            self.model_name,
            settings.onnx_cache_dir,
            self.device or settings.embedding_device,
            self.backend or settings.embedding_backend,
            self.batch_size or settings.embedding_batch_size,
            self.batch_size or settings.embedding_cuda_batch_size,
            settings.embedding_cuda_dtype,
        )


def build_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "settings": SettingsResource(),
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
        "training": TrainingLauncher(launcher=load_settings().training_launcher),
    }
