"""Secrets and personal data never reach the index: secret files are not collected, and what the
author's files and posts still hold is scrubbed by cleaning, before chunking and embedding."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from conftest import materialize_features

from twin_platform.collection.crawlers.github import skip_reason
from twin_platform.collection.ingest import ingest_author
from twin_platform.collection.sources import AuthorConfig, SourceSpec
from twin_platform.features.pii import is_indirect_reference, scrub_pii
from twin_platform.settings import load_settings
from twin_platform.storage import warehouse
from twin_platform.storage.postgres import connect

DATABASE = "secrets_test"
# Fake credentials in their providers' real formats (an OpenAI key carries "T3BlbkFJ").
OPENAI_KEY = "sk-proj-" + "Xy7Qp2Lm9Rt4Vw8Zb3Nc" + "T3BlbkFJ" + "Hd5Kf1Gs6Jq0Pa2Ue4Wi"
AWS_KEY = "AKIAQ3EGUKK4VTZ7X2MB"
EMAIL = "jane.doe@example.org"
PHONE = "+44 20 7946 0958"
PRIVATE_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAv5TfQ\n-----END RSA PRIVATE KEY-----"
)
LEAKS = (OPENAI_KEY, AWS_KEY, EMAIL, "7946 0958", "MIIEpAIBAAKCAQEAv5TfQ", "T3BlbkFJ")


@pytest.fixture
def conn(postgres_url: str) -> Iterator[psycopg.Connection]:
    with connect(postgres_url) as connection:
        yield connection


def author_sources(tmp_path: Path) -> list[SourceSpec]:
    """A repository with a `.env`, a key file and a client holding a key and an email, and a
    folder of posts with an email and a phone number."""
    repo = tmp_path / "quillstack"
    (repo / "src").mkdir(parents=True)
    (repo / "deploy").mkdir()
    (repo / ".env").write_text(f"OPENAI_API_KEY={OPENAI_KEY}\nDB_PASSWORD=hunter2hunter2\n")
    (repo / "deploy" / "id_rsa").write_text(PRIVATE_KEY + "\n")
    (repo / "deploy" / "server.pem").write_text(PRIVATE_KEY + "\n")
    (repo / "src" / "client.py").write_text(
        f'"""HTTP client for the quill service. Maintainer: {EMAIL}."""\n\n'
        f'OPENAI_KEY = "{OPENAI_KEY}"\nAWS_ACCESS_KEY_ID = "{AWS_KEY}"\n\n\n'
        "def connect(host: str = '127.0.0.1') -> str:\n    return f'https://{host}'\n"
    )
    (repo / "README.md").write_text(
        f"# quillstack\n\nSmall tools for writing. Questions: {EMAIL}.\n"
    )
    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / "hello.md").write_text(
        "---\ntitle: Office hours\ncategory: posts\n---\n"
        f"Office hours are back on Fridays: write to {EMAIL} or call {PHONE}. "
        f"And no, the key in my screenshot ({OPENAI_KEY}) was revoked the same minute.\n"
    )
    return [SourceSpec(path=repo, kind="git"), SourceSpec(path=posts)]


def test_secret_files_are_not_collected_and_nothing_secret_is_indexed(
    tmp_path: Path, mongodb_url: str, instance: dg.DagsterInstance, conn: psycopg.Connection
) -> None:
    author = f"secrets-{uuid.uuid4().hex[:8]}"
    db = warehouse.connect(mongodb_url, DATABASE)
    sources = author_sources(tmp_path)
    report = ingest_author(AuthorConfig(name=author, sources=sources), db, load_settings())
    assert report.total_failed == 0
    repository = db["repositories"].find_one({"author": author})
    assert repository is not None
    assert repository["metadata"]["files"] == ["README.md", "src/client.py"]
    assert repository["metadata"]["skipped"]["secrets"] == 3  # .env, id_rsa, server.pem
    assert "DB_PASSWORD" not in repository["content"] and "PRIVATE KEY" not in repository["content"]

    run = materialize_features(instance, author, DATABASE)
    assert run["cleaned_documents"]["pii_scrubbed"]["email"] >= 3
    assert run["embedded_chunks"]["embedded"] > 0
    for table in ("cleaned_documents", "chunks", "embedded_chunks"):
        column = "content"
        texts = [
            r[0] for r in conn.execute(f"SELECT {column} FROM {table} WHERE author = %s", (author,))
        ]
        assert texts, table
        for leak in LEAKS:
            assert not any(leak in text for text in texts), (table, leak)
    cleaned = "\n".join(
        r[0]
        for r in conn.execute("SELECT content FROM cleaned_documents WHERE author = %s", (author,))
    )
    assert "[EMAIL]" in cleaned and "[SECRET]" in cleaned and "[PHONE]" in cleaned
    assert "'127.0.0.1'" in cleaned  # a loopback address is not personal data: code keeps it


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        (".env", True),
        (".env.production", True),
        ("id_rsa", True),
        ("id_ed25519.pub", True),
        ("tls.key", True),
        ("cert.pem", True),
        ("credentials.json", True),
        ("gcp-credentials.json", True),
        (".npmrc", True),
        ("terraform.tfstate", True),
        ("env.py", False),
        ("keyboard.py", False),
        ("README.md", False),
        (".envrc.md", False),
    ],
)
def test_secret_file_names(name: str, secret: bool) -> None:
    assert (skip_reason(Path("repo") / name, b"text") == "secrets") is secret


def test_detect_secrets_finds_what_the_patterns_miss_and_spares_prose() -> None:
    text = (
        "DATABASE_URL=postgres://admin:S3cr3tPassw0rd@db.internal:5432/app\n"
        'SLACK = "xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"\n'
        "jwt: eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U\n"
        "The p99 was 140 ms for 50,000 rows on version 3.12 at 10.0.0.2, commit 3f2a9c1.\n"
    )
    scrubbed, found = scrub_pii(text)
    assert "S3cr3tPassw0rd" not in scrubbed and "xoxb-" not in scrubbed and "eyJ" not in scrubbed
    assert found["token"] == 1 and found["api_key"] == 1 and found["jwt"] == 1
    assert scrubbed.endswith(
        "The p99 was 140 ms for 50,000 rows on version 3.12 at 10.0.0.2, commit 3f2a9c1.\n"
    )


@pytest.mark.parametrize(
    "line",
    [
        'password = vault.read("db")',
        'api_token = request.headers["X-Token"]',
        "secret == cfg[key]",
        "Ship it! Then measure: p99 = 140 ms.",
        "value = value + 3  # no brackets",
        "def retry(call, attempts=3):",
        "A paragraph (with brackets) and no assignment sign at all",
        "x" * 999 + "=f()",
        "",
    ],
)
def test_the_indirect_reference_filter_decides_as_detect_secrets_does(line: str) -> None:
    """Ours only skips detect-secrets' regex on lines it cannot match."""
    from detect_secrets.filters import heuristic

    assert is_indirect_reference(line) == heuristic.is_indirect_reference(line)
