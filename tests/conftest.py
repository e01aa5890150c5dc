"""Fixtures that start the real servers once per test session, in a throwaway TWIN_HOME."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from pymongo.database import Database

from twin_platform import servers
from twin_platform.collection.ingest import IngestReport
from twin_platform.servers.process import free_port
from twin_platform.settings import Settings, load_settings
from twin_platform.storage.feature_store import writes
from twin_platform.storage.feature_store.records import Chunk, CleanedDocument

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DEEPEVAL_TELEMETRY_OPT_OUT", "YES")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("WANDB_MODE", "offline")
# Isolated from the developer's setup: no `.env`, no external servers, a throwaway TWIN_HOME, set
# before any test module is imported (the Dagster definitions read settings when they load).
os.environ["TWIN_ENV_FILE"] = ""
for _var in [v for v in os.environ if v.startswith("TWIN_") and v != "TWIN_ENV_FILE"] + [
    "DATABASE_URL",
    "MONGODB_URI",
    "DAGSTER_HOME",
]:
    os.environ.pop(_var, None)
# Not under pytest's own temp root: pytest resets that to mode 0700 at each session start, which
# locks out the embedded Postgres (it runs as its own system user when tests run as root).
TWIN_HOME = Path(tempfile.mkdtemp(prefix="twin-test-"))
os.environ["TWIN_HOME"] = str(TWIN_HOME)
os.environ["DAGSTER_HOME"] = str(TWIN_HOME / "dagster")
(TWIN_HOME / "dagster").mkdir()
# A free port: a developer's own `make run` server may hold the default one.
os.environ["TWIN_MONGO_PORT"] = str(free_port())


@pytest.fixture(scope="session")
def twin_home() -> Iterator[Path]:
    """The session's TWIN_HOME; its servers are stopped and its files removed at the end."""
    yield TWIN_HOME
    servers.down(load_settings())
    shutil.rmtree(TWIN_HOME, ignore_errors=True)


@pytest.fixture(autouse=True, scope="module")
def deployments_stay_in_their_module() -> Iterator[None]:
    """Deployment records a test module writes are undone after it: another module's API would
    otherwise serve that module's models."""
    folder = load_settings().deployments_dir
    before = {p: p.read_bytes() for p in folder.glob("*.json")}
    yield
    for path in folder.glob("*.json"):
        if path not in before:
            path.unlink()
        elif path.read_bytes() != before[path]:
            path.write_bytes(before[path])


@pytest.fixture(scope="session")
def postgres_url(twin_home: Path) -> str:
    return servers.postgres_uri(load_settings())


@pytest.fixture(scope="session")
def mongodb_url(twin_home: Path) -> str:
    return servers.mongodb_uri(load_settings())


def ingest_sample(db: Database, settings: Settings) -> IngestReport:
    """The shipped sample author (`ada-quill`) into the warehouse, as the collection asset does it."""
    from twin_platform.collection.ingest import ingest_author
    from twin_platform.collection.sources import SAMPLE_AUTHOR, SAMPLE_AUTHORS_FILE, load_sources

    author = load_sources(SAMPLE_AUTHORS_FILE).get(SAMPLE_AUTHOR)
    assert author is not None
    return ingest_author(author, db, settings)


@pytest.fixture(scope="session")
def sample_author(mongodb_url: str) -> str:
    """The sample corpus (data/sample, author `ada-quill`) ingested into the warehouse; returns the author."""
    from twin_platform.storage.warehouse import connect

    settings = load_settings()
    report = ingest_sample(connect(mongodb_url, settings.mongodb_database), settings)
    assert report.total_failed == 0, report.failures
    return report.author


def bundled_tokenizer():  # type: ignore[no-untyped-def]
    """SmolLM2's tokenizer with its chat template, read from the bundled GGUF once (tens of seconds),
    then from a copy cached beside the user's other caches, keyed by the GGUF file and the format."""
    from transformers import AutoTokenizer

    from twin_platform.fsutil import publishing
    from twin_platform.models.base_model import FORMAT, bundled_gguf, bundled_tokenizer_folder

    stat = bundled_gguf().stat()
    key = f"tokenizer-{stat.st_size}-{int(stat.st_mtime)}-v{FORMAT}"
    cache = Path.home() / ".cache" / "twin-platform" / key
    if not (cache / "tokenizer_config.json").is_file():
        with publishing(cache, replace=True) as staging:
            bundled_tokenizer_folder(staging)
    return AutoTokenizer.from_pretrained(str(cache))


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama with the real SmolLM2 tokenizer and chat template, as a Hugging Face folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = bundled_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        initializer_range=0.3,  # confident random logits: LoRA can move them within a few steps
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def instance() -> dg.DagsterInstance:
    """An ephemeral Dagster instance shared by the tests that materialize assets."""
    return dg.DagsterInstance.ephemeral()


def materialize_features(
    instance: dg.DagsterInstance, author: str, database: str = "features_test"
) -> dict[str, dict[str, Any]]:
    """The three feature assets for one author, as the graph runs them: metadata by asset."""
    from assets.features import chunks, cleaned_documents, embedded_chunks
    from assets.partitions import add_authors
    from resources import (
        EmbeddingModelResource,
        PostgresResource,
        SettingsResource,
        WarehouseResource,
    )

    add_authors(instance, [author])
    result = dg.materialize(
        [cleaned_documents, chunks, embedded_chunks],
        partition_key=author,
        instance=instance,
        resources={
            "settings": SettingsResource(),
            "postgres": PostgresResource(),
            "warehouse": WarehouseResource(database=database),
            "embedding_model": EmbeddingModelResource(),
        },
    )
    assert result.success
    return {
        node: {
            key: value.value
            for key, value in result.asset_materializations_for_node(node)[0].metadata.items()
        }
        for node in ("cleaned_documents", "chunks", "embedded_chunks")
    }


@pytest.fixture(scope="session")
def sample_features(sample_author: str, postgres_url: str, instance: dg.DagsterInstance) -> str:
    """The sample author through the real feature assets into the store; returns the author."""
    materialize_features(instance, sample_author, load_settings().mongodb_database)
    return sample_author


def add_chunks(conn: Any, author: str, texts: list[str]) -> list[Chunk]:
    """One document with these chunks, as the chunking stage writes them."""
    document = CleanedDocument(
        document_id=f"doc-{author}",
        author=author,
        category="posts",
        platform="x",
        url=f"https://{author}.test/p",
        title=None,
        content="\n\n".join(texts),
        content_hash="h",
        language="en",
        published_at=None,
        status="ok",
        cleaner_version="test",
    )
    writes.upsert_cleaned(conn, [document])
    chunks = [
        Chunk(
            chunk_id=f"{author}-{i:05d}",
            document_id=document.document_id,
            author=author,
            category="posts",
            source_url=document.url,
            chunk_index=i,
            content=text,
            token_count=len(text.split()) + 2,
        )
        for i, text in enumerate(texts)
    ]
    writes.replace_chunks(conn, [document.document_id], chunks, "test")
    return chunks
