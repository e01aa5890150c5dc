"""A reference-system export of scraped pages, imported and cleaned down to the author's own words.

The pages come from `fixtures/scraped/pages.py`: Substack, Medium and personal-site chrome around
original paragraphs. Import and cleaning run as the platform runs them (warehouse, then
`sync_cleaned_documents` with per-platform chrome measured over the corpus), on the real servers.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fixtures.scraped.pages import MEDIUM_CHROME, Export, section, write_export
from pymongo.database import Database

from twin_platform.collection.ingest import ingest_author
from twin_platform.collection.sources import AuthorConfig, SourceSpec
from twin_platform.features import pipeline
from twin_platform.features.boilerplate import line_key
from twin_platform.features.cleaning import DocumentContext, clean
from twin_platform.settings import load_settings
from twin_platform.storage import warehouse
from twin_platform.storage.postgres import connect

USER = "nora-vance"


def words(text: str) -> str:
    """Text as comparable words: what survives re-flowing, Markdown and Unicode normalisation."""
    return " ".join(re.findall(r"[^\W_]+", text.casefold()))


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Export:
    return write_export(tmp_path_factory.mktemp("reference") / "data_warehouse_raw_data")


@pytest.fixture(scope="module")
def db(mongodb_url: str) -> Database:
    database = warehouse.connect(mongodb_url, "real_corpus_test")
    warehouse.ensure_indexes(database)
    return database


@pytest.fixture
def conn(postgres_url: str) -> Iterator[psycopg.Connection]:
    with connect(postgres_url) as connection:
        yield connection


@pytest.fixture(scope="module")
def cleaned(export: Export, db: Database, postgres_url: str) -> dict[str, str]:
    """The export's first user, ingested under a fresh author key and cleaned: content by URL."""
    author = f"{USER}-{uuid.uuid4().hex[:6].translate(str.maketrans('0123456789', 'ghijklmnop'))}"
    source = SourceSpec(path=_renamed(export, author))
    report = ingest_author(AuthorConfig(name=author, sources=[source]), db, load_settings())
    assert report.total_failed == 0 and report.counts["articles"].new == len(export.truths)
    with connect(postgres_url) as connection:
        result = pipeline.sync_cleaned_documents(db, connection, author)
        rows = connection.execute(
            "SELECT url, content FROM cleaned_documents WHERE author = %s", (author,)
        ).fetchall()
    assert result.new == len(export.truths) and result.by_status == {"ok": len(export.truths)}
    assert result.boilerplate["substack"]["threshold"] >= 2 and result.dropped_lines
    return dict(rows)


def _renamed(export: Export, author: str) -> Path:
    """The export with its first user renamed so that the author key is unique to this run."""
    folder = export.folder.parent / author
    if not folder.exists():
        folder.mkdir()
        for path in export.folder.iterdir():
            name = author.replace("-", " ").title()  # "Nora Vance Abcdef": its slug is `author`
            text = path.read_text(encoding="utf-8").replace("Nora Vance", name)
            (folder / path.name).write_text(text, encoding="utf-8")
    return folder


def test_every_paragraph_of_the_author_is_kept(export: Export, cleaned: dict[str, str]) -> None:
    for truth in export.truths:
        text = words(cleaned[truth.url])
        for paragraph in truth.paragraphs:
            assert words(paragraph) in text, (truth.url, paragraph[:60])
    # The sign-off every newsletter issue repeats is the author's too: kept once, not everywhere.
    keeping = [url for url, text in cleaned.items() if words(export.sign_off) in words(text)]
    assert len(keeping) == 1


def test_no_chrome_line_is_left(export: Export, cleaned: dict[str, str]) -> None:
    chrome = {line_key(line) for line in export.chrome}
    for url, text in cleaned.items():
        for line in text.split("\n"):
            key = line_key(line)
            assert key not in chrome, (url, line)
            assert not re.fullmatch(r"[\d.,]+( subscribers)?|[a-z]{3,9} \d{1,2}, \d{4}", key), (
                url,
                line,
            )
        assert not any(marker in text for marker in MEDIUM_CHROME), url
        assert "substack.com" not in text and "requires JavaScript" not in text


def test_title_block_once_and_structure_kept(export: Export, cleaned: dict[str, str]) -> None:
    for truth in export.truths:
        lines = cleaned[truth.url].split("\n")
        assert [line for line in lines if line_key(line) == line_key(truth.title)] == [
            f"# {truth.title}"
        ]
        if truth.platform == "medium":
            continue
        assert "## Conclusion" in lines and f"## {section(truth.title)}" in lines  # recurring
        assert any(line.startswith("> Measure the") for line in lines)
        assert sum(line.startswith("  * Write down the") for line in lines) == 1
        if truth.has_code:
            assert "    def ferment(hours, degrees):" in lines
        # Hard-wrapped paragraphs are re-flowed into one line each.
        assert all(paragraph in lines for paragraph in truth.paragraphs[1:]), truth.url


def test_cleaning_is_incremental_and_deterministic(
    export: Export, cleaned: dict[str, str], db: Database, conn: psycopg.Connection
) -> None:
    url = export.truths[0].url
    original = db["articles"].find_one({"url": url})
    assert original is not None
    author = original["author"]
    again = pipeline.sync_cleaned_documents(db, conn, author)
    assert (again.new, again.changed, again.deleted) == (0, 0, 0) and not again.boilerplate
    # An edit re-measures the chrome of its platform only, and cleans what that changes.
    edited = {"content": "A rewritten post.\n\nShare this post", "content_hash": "edited"}
    db["articles"].update_one({"_id": original["_id"]}, {"$set": edited})
    third = pipeline.sync_cleaned_documents(db, conn, author)
    assert third.changed >= 1 and third.new == 0 and set(third.boilerplate) == {"substack"}
    # Back to the first state: exactly the first cleaning, whatever happened in between.
    db["articles"].replace_one({"_id": original["_id"]}, original)
    pipeline.sync_cleaned_documents(db, conn, author)
    stored = conn.execute(
        "SELECT url, content FROM cleaned_documents WHERE author = %s", (author,)
    ).fetchall()
    assert dict(stored) == cleaned


def test_single_page_without_a_corpus_loses_its_known_widgets(export: Export) -> None:
    """Known Substack widgets go even when the author has one document: no corpus to compare."""
    from twin_platform.collection.importers import import_export

    doc = next(d for d in import_export(export.folder, "tomas-reyes").documents)
    text = clean(doc.content, "articles", context=DocumentContext(title=doc.title)).content
    for widget in ("Copy link", "SubscribeSign in", "Share this post", "Facebook", "PreviousNext"):
        assert widget not in text.split("\n")
    assert text.count("Why my sourdough stopped rising in winter") == 1
