"""Fixtures that start the real servers once per test session, in a throwaway TWIN_HOME."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DEEPEVAL_TELEMETRY_OPT_OUT", "YES")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("WANDB_MODE", "offline")
for _var in ("DATABASE_URL", "MONGODB_URI", "TWIN_DATABASE_URL", "TWIN_MONGODB_URI"):
    os.environ.pop(_var, None)


@pytest.fixture(scope="session")
def twin_home() -> Iterator[Path]:
    """A TWIN_HOME for the whole session; its servers are stopped and its files removed at the end.

    Not under pytest's own temp root: pytest resets that to mode 0700 at each session start, which
    locks out the embedded Postgres (it runs as its own system user when tests run as root).
    """
    from twin_platform import services

    home = Path(tempfile.mkdtemp(prefix="twin-test-"))
    previous = os.environ.get("TWIN_HOME")
    os.environ["TWIN_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home / "dagster")
    (home / "dagster").mkdir()
    # A free port: a developer's own `make run` server may hold the default one.
    from twin_platform.services.process import free_port

    os.environ["TWIN_MONGO_PORT"] = str(free_port())
    yield home
    services.down()
    shutil.rmtree(home, ignore_errors=True)
    if previous is None:
        os.environ.pop("TWIN_HOME", None)
    else:
        os.environ["TWIN_HOME"] = previous


@pytest.fixture(scope="session")
def postgres_url(twin_home: Path) -> str:
    from twin_platform import services

    return services.postgres_uri()


@pytest.fixture(scope="session")
def mongodb_url(twin_home: Path) -> str:
    from twin_platform import services

    return services.mongodb_uri()


@pytest.fixture(scope="session")
def sample_author(mongodb_url: str) -> str:
    """The sample corpus (data/sample, author `ada-quill`) ingested into the warehouse; returns the author."""
    from twin_platform.ingest import ingest_sample
    from twin_platform.settings import load_settings
    from twin_platform.storage.warehouse import connect

    settings = load_settings()
    report = ingest_sample(connect(mongodb_url, settings.mongodb_database), settings)
    assert report.total_failed == 0, report.failures
    return report.author
