"""One document that cannot be parsed costs only itself, in the warehouse and in the Dagster run.

The regression of the issue: a Substack zip, a LinkedIn export and a Medium folder whose HTML holds
`<blockquote><p>` once failed the author's whole `raw_documents` run with a RecursionError.
"""

import shutil
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from pymongo.database import Database

from twin_platform.collection.ingest import ingest_author
from twin_platform.collection.sources import AuthorConfig, SourceSpec, register_author
from twin_platform.documents import Category
from twin_platform.settings import load_settings
from twin_platform.storage.warehouse import connect

EXPORTS = Path(__file__).parent / "fixtures" / "exports"


@pytest.fixture
def db(mongodb_url: str) -> Iterator[Database]:
    database = connect(mongodb_url, f"test_isolation_{uuid.uuid4().hex[:8]}")
    yield database
    database.client.drop_database(database.name)


def zipped(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"export/{path.relative_to(folder).as_posix()}")
    return target


def folder_with_broken_files(tmp_path: Path, good: bool = True) -> Path:
    """A plain-folder export: binary garbage and a file whose parsing raises, with good files."""
    folder = tmp_path / ("mixed" if good else "broken")
    if good:
        shutil.copytree(EXPORTS / "rich_folder", folder)
    folder.mkdir(exist_ok=True)
    (folder / "scan.html").write_bytes(bytes(range(256)) * 4)
    (folder / "bad-date.md").write_text("---\ndate: 2024-13-45\n---\nMonth thirteen.\n")
    return folder


def test_the_exports_of_the_issue_are_stored(db: Database, tmp_path: Path) -> None:
    author = AuthorConfig(
        name="ada-quill",
        sources=[
            SourceSpec(
                path=zipped(EXPORTS / "rich_substack", tmp_path / "substack.zip"),
                base_url="https://adaquill.substack.com",
            ),
            SourceSpec(path=EXPORTS / "rich_linkedin"),
            SourceSpec(path=EXPORTS / "rich_medium"),
        ],
    )
    report = ingest_author(author, db, load_settings())
    assert report.total_failed == 0, report.failures
    assert report.counts[Category.ARTICLES].new == 3 and report.counts[Category.POSTS].new == 2
    post = db.articles.find_one({"url": "https://adaquill.substack.com/p/retries-with-a-budget"})
    assert "> A retry budget of 10% would have prevented our worst outage." in post["content"]


def test_a_broken_file_is_reported_and_the_others_stored(db: Database, tmp_path: Path) -> None:
    folder = folder_with_broken_files(tmp_path)
    author = AuthorConfig(name="ada-quill", sources=[SourceSpec(path=folder)])
    report = ingest_author(author, db, load_settings())
    stored = {d["title"] for c in Category for d in db[c.value].find({"author": "ada-quill"})}
    assert stored == {"Field notes on dashboards", "Retry budgets in one page"}
    failures = {f.location: f.reason for items in report.failures.values() for f in items}
    assert failures == {
        str(folder / "scan.html"): "binary file",
        str(folder / "bad-date.md"): "could not parse (ValueError: month must be in 1..12)",
    }
    assert report.total_failed == 2


def materialize(
    mongodb_url: str, db: Database, sources_file: Path, author: str
) -> dg.ExecuteInProcessResult:
    from assets.partitions import authors
    from assets.raw_documents import CollectConfig, raw_documents
    from resources import SettingsResource, WarehouseResource

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(authors.name, [author])
    return dg.materialize(
        [raw_documents],
        partition_key=author,
        instance=instance,
        raise_on_error=False,
        resources={
            "settings": SettingsResource(),
            "warehouse": WarehouseResource(mongodb_uri=mongodb_url, database=db.name),
        },
        run_config=dg.RunConfig(
            ops={"raw_documents": CollectConfig(sources_file=str(sources_file))}
        ),
    )


def test_the_run_fails_only_when_nothing_was_collected(
    mongodb_url: str, db: Database, tmp_path: Path
) -> None:
    sources_file = tmp_path / "authors.yaml"
    broken = folder_with_broken_files(tmp_path, good=False)
    register_author(sources_file, "nothing-good", [SourceSpec(path=broken)])
    register_author(
        sources_file, "partly-good", [SourceSpec(path=folder_with_broken_files(tmp_path))]
    )

    failed = materialize(mongodb_url, db, sources_file, "nothing-good")
    assert not failed.success
    message = next(
        e for e in failed.all_events if e.is_step_failure
    ).event_specific_data.error.message
    assert "no document collected, 2 failed" in message
    assert f"{broken / 'scan.html'}: binary file" in message and "bad-date.md" in message

    partly = materialize(mongodb_url, db, sources_file, "partly-good")
    assert partly.success
    articles = next(
        m.materialization
        for m in partly.get_asset_materialization_events()
        if m.asset_key.to_user_string() == "raw_articles"
    )
    assert (
        articles.metadata["failed"].value == 2
        and "bad-date.md" in articles.metadata["failures"].value
    )
