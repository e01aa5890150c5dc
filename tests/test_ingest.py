"""Sources -> warehouse: idempotent upserts, updates, failures, the sources file, and the Dagster layer."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from conftest import ingest_sample
from fixtures.recorded_site import RecordedSite, serve
from pymongo.database import Database

from twin_platform.collection.checks import check_documents
from twin_platform.collection.ingest import ingest_author
from twin_platform.collection.sources import (
    SAMPLE_AUTHORS_FILE,
    AuthorConfig,
    SourceSpec,
    load_sources,
    parse_source,
    register_author,
    register_sample_author,
)
from twin_platform.documents import Post
from twin_platform.settings import Settings, load_settings
from twin_platform.storage.warehouse import Category, connect

BROKEN = Path(__file__).parent / "fixtures" / "exports"


@pytest.fixture
def db(mongodb_url: str) -> Iterator[Database]:
    """A database of its own, so counts are exact whatever else the session stored."""
    database = connect(mongodb_url, f"test_ingest_{uuid.uuid4().hex[:8]}")
    yield database
    database.client.drop_database(database.name)


@pytest.fixture(scope="module")
def site() -> Iterator[RecordedSite]:
    with serve() as recorded:
        yield recorded


def local_settings() -> Settings:
    return load_settings(
        crawl_allow_networks=["127.0.0.1/32"], crawl_backoff_s=0.01, crawl_retries=1
    )


def summary(report) -> dict[str, dict[str, int]]:  # type: ignore[no-untyped-def]
    return {c.value: counts.as_dict() for c, counts in report.counts.items()}


def test_sample_corpus_is_big_enough_and_has_its_facts(
    sample_author: str, mongodb_url: str
) -> None:
    db = connect(mongodb_url, load_settings().mongodb_database)
    docs = {c: list(db[c.value].find({"author": sample_author})) for c in Category}
    total = sum(len(d) for d in docs.values())
    words = sum(len(doc["content"].split()) for items in docs.values() for doc in items)
    assert sample_author == "ada-quill"
    assert total >= 25 and words >= 20_000, (total, words)
    assert all(docs[c] for c in Category)
    by_url = {doc["url"]: doc for items in docs.values() for doc in items}
    p50 = by_url["https://adaquill.substack.com/p/why-i-stopped-trusting-p50"]
    assert "p99" in p50["content"] and "800 ms" in p50["content"]
    rule = by_url["https://www.linkedin.com/feed/update/urn%3Ali%3Aactivity%3A7160000000000000000"]
    assert "three-line rule" in rule["content"]
    repo = by_url["https://github.com/ada-quill/quillstack"]
    assert "# quillstack" in repo["content"] and "uv.lock" not in repo["metadata"]["files"]


def test_three_runs_give_the_same_counts(db: Database) -> None:
    settings = load_settings()
    first, second, third = (ingest_sample(db, settings) for _ in range(3))
    stored = {c.value: db[c.value].count_documents({"author": "ada-quill"}) for c in Category}
    assert summary(first) == {
        c: {"new": n, "updated": 0, "unchanged": 0, "failed": 0} for c, n in stored.items()
    }
    assert (
        summary(second)
        == summary(third)
        == {c: {"new": 0, "updated": 0, "unchanged": n, "failed": 0} for c, n in stored.items()}
    )
    assert sum(stored.values()) >= 25


def test_an_updated_page_updates_its_document_and_a_failing_one_keeps_it(
    db: Database, site: RecordedSite
) -> None:
    url = f"{site.base_url}/articles/living"
    author = AuthorConfig(name="ada-quill", sources=[SourceSpec(url=url)])
    settings = local_settings()
    site.version = 1
    assert summary(ingest_author(author, db, settings))["articles"]["new"] == 1
    assert summary(ingest_author(author, db, settings))["articles"]["unchanged"] == 1
    site.version = 2
    assert summary(ingest_author(author, db, settings))["articles"] == {
        "new": 0,
        "updated": 1,
        "unchanged": 0,
        "failed": 0,
    }
    [stored] = list(db.articles.find({"author": "ada-quill"}))
    assert "Revision 2." in stored["content"] and stored["url"] == url
    site.status_override["/articles/living"] = 500
    try:
        failing = ingest_author(author, db, settings)
    finally:
        site.status_override.clear()
    assert summary(failing)["articles"] == {"new": 0, "updated": 0, "unchanged": 0, "failed": 1}
    assert "HTTP 500" in failing.failures[Category.ARTICLES][0].reason
    assert db.articles.find_one({"author": "ada-quill"})["content"] == stored["content"]


def test_bad_sources_cost_only_themselves(db: Database, tmp_path: Path) -> None:
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 nope")
    author = AuthorConfig(
        name="someone",
        sources=[
            SourceSpec(path=tmp_path / "broken.zip"),
            SourceSpec(path=tmp_path / "does-not-exist"),
            SourceSpec(path=BROKEN / "folder"),
            SourceSpec(path=tmp_path / "no-repo", kind="git"),
            SourceSpec(url="http://127.0.0.1:9/blocked-by-the-ssrf-guard"),
        ],
    )
    report = ingest_author(author, db, load_settings())
    counts = summary(report)
    assert counts["articles"]["new"] + counts["posts"]["new"] == 4  # the folder's four good files
    assert counts["articles"]["failed"] == 4 and counts["repositories"]["failed"] == 1
    reasons = " | ".join(f.reason for items in report.failures.values() for f in items)
    assert (
        "not a zip file" in reasons
        and "no such file or folder" in reasons
        and "non-public address" in reasons
    )


def test_checks_catch_bad_documents(db: Database) -> None:
    db.posts.insert_one(
        Post(author="a", platform="x", url="https://x.com/a/status/1", content="fine").to_mongo()
    )
    assert all(o.passed for o in check_documents(db, "a", Category.POSTS))
    db.posts.insert_one(
        {"author": "a", "platform": "github", "url": "https://x.com/a/status/2", "content": "  "}
    )
    outcomes = {o.name: o for o in check_documents(db, "a", Category.POSTS)}
    assert not outcomes["no_empty_content"].passed and outcomes["no_empty_content"].metadata[
        "examples"
    ] == ["https://x.com/a/status/2"]
    assert (
        not outcomes["valid_category"].passed
        and "not a posts platform" in outcomes["valid_category"].metadata["examples"][0]
    )
    db.posts.insert_one(
        {"author": "a", "platform": "x", "url": "https://X.com/a/status/1/", "content": "dup"}
    )
    assert not {o.name: o for o in check_documents(db, "a", Category.POSTS)}[
        "no_duplicate_urls"
    ].passed


# The sources file.


def test_sources_file_registers_once_and_resolves_relative_paths(tmp_path: Path) -> None:
    path = tmp_path / "authors.yaml"
    export = parse_source(str(BROKEN / "folder"))
    register_author(
        path, "ada-quill", [export, SourceSpec(url="https://medium.com/@adaquill")], "Ada Quill"
    )
    author = register_author(path, "ada-quill", [export])
    assert len(author.sources) == 2 and author.display_name == "Ada Quill"
    assert load_sources(path).get("ada-quill") == author
    sample = load_sources(SAMPLE_AUTHORS_FILE).get("ada-quill")
    assert sample is not None and all(s.path is None or s.path.is_dir() for s in sample.sources)
    assert sample.sources[-1].url == "https://github.com/ada-quill/quillstack"


def test_sample_author_is_registered_only_into_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "authors.yaml"
    assert register_sample_author(path) is not None
    assert register_sample_author(path) is None
    assert [a.name for a in load_sources(path).authors] == ["ada-quill"]


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "Ada Quill", "sources": []},
        {"name": "ada", "sources": [{"url": "ftp://x"}]},
        {"name": "ada", "sources": [{"kind": "medium"}]},
        {"name": "ada", "sources": [{"path": "x", "kind": "myspace"}]},
    ],
)
def test_invalid_authors_are_rejected(bad: dict) -> None:
    with pytest.raises(ValueError):
        AuthorConfig.model_validate(bad)


def test_parse_source() -> None:
    assert parse_source("https://ada.substack.com").url == "https://ada.substack.com"
    with pytest.raises(ValueError, match="neither an http"):
        parse_source("/no/such/export.zip")


# The Dagster layer: assets, checks, the launchpad job and the sensor, in process.


def test_raw_assets_materialize_with_metadata_and_passing_checks(mongodb_url: str) -> None:
    from assets.partitions import authors
    from assets.raw_documents import CollectConfig, raw_documents
    from resources import SettingsResource, WarehouseResource

    database = f"test_assets_{uuid.uuid4().hex[:8]}"
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(authors.name, ["ada-quill"])
    result = dg.materialize(
        [raw_documents],
        partition_key="ada-quill",
        instance=instance,
        resources={
            "settings": SettingsResource(),
            "warehouse": WarehouseResource(mongodb_uri=mongodb_url, database=database),
        },
        run_config=dg.RunConfig(
            ops={"raw_documents": CollectConfig(sources_file=str(SAMPLE_AUTHORS_FILE))}
        ),
    )
    assert result.success
    materializations = {
        m.asset_key.to_user_string(): m for m in result.get_asset_materialization_events()
    }
    assert set(materializations) == {"raw_articles", "raw_posts", "raw_repositories"}
    articles = materializations["raw_articles"].materialization
    assert articles.partition == "ada-quill"
    meta = articles.metadata
    assert meta["new"].value == meta["documents_stored"].value >= 30 and meta["failed"].value == 0
    assert "| title | platform | words | published | url |" in meta["preview"].value
    assert meta["words_per_month"].value.startswith(
        "![raw_articles: words per month](data:image/png;base64,"
    )
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 9 and all(c.passed for c in checks)
    connect(mongodb_url, database).client.drop_database(database)


def test_unknown_author_fails_with_a_clear_message(mongodb_url: str, tmp_path: Path) -> None:
    from assets.partitions import authors
    from assets.raw_documents import CollectConfig, raw_documents
    from resources import SettingsResource, WarehouseResource

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(authors.name, ["nobody"])
    result = dg.materialize(
        [raw_documents],
        partition_key="nobody",
        instance=instance,
        raise_on_error=False,
        resources={
            "settings": SettingsResource(),
            "warehouse": WarehouseResource(mongodb_uri=mongodb_url),
        },
        run_config=dg.RunConfig(
            ops={"raw_documents": CollectConfig(sources_file=str(tmp_path / "none.yaml"))}
        ),
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "'nobody' is not in" in failure.event_specific_data.error.message


def test_add_author_job_and_sensor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs.collection import add_author
    from sensors.authors import author_sources

    sources_file = tmp_path / "authors.yaml"
    monkeypatch.setenv("TWIN_SOURCES_FILE", str(sources_file))
    instance = dg.DagsterInstance.ephemeral()
    register_author(sources_file, "ada-quill", [parse_source(str(BROKEN / "folder"))])

    first = author_sources(dg.build_sensor_context(instance=instance))
    assert [r.partition_key for r in first.run_requests] == ["ada-quill"]
    assert instance.get_dynamic_partitions("authors") == ["ada-quill"]  # added by the sensor
    quiet = author_sources(dg.build_sensor_context(instance=instance, cursor=first.cursor))
    assert quiet.run_requests == []

    result = add_author.execute_in_process(
        instance=instance,
        run_config={
            "ops": {
                "register_author_sources": {
                    "config": {
                        "name": "bob",
                        "display_name": "Bob",
                        "sources": ["https://bob.substack.com"],
                    }
                }
            }
        },
    )
    assert result.success and instance.has_dynamic_partition("authors", "bob")
    assert load_sources(sources_file).get("bob").sources[0].url == "https://bob.substack.com"
    after = author_sources(dg.build_sensor_context(instance=instance, cursor=quiet.cursor))
    assert [r.partition_key for r in after.run_requests] == ["bob"]


def test_concurrent_runs_never_duplicate(db: Database) -> None:
    from concurrent.futures import ThreadPoolExecutor

    settings = load_settings()
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(pool.map(lambda _: ingest_sample(db, settings), range(2)))
    for category in Category:
        stored = db[category.value].count_documents({"author": "ada-quill"})
        counts = [r.counts[category] for r in reports]
        assert (
            len({d["url"] for d in db[category.value].find({"author": "ada-quill"}, {"url": 1})})
            == stored
        )
        assert all(c.failed == 0 for c in counts)
        assert counts[0].new + counts[1].new == stored  # each document inserted exactly once


@pytest.mark.slow
def test_twin_ingest_cli(mongodb_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`twin ingest` end to end: sources file, dynamic partition, materialization, counts."""
    from typer.testing import CliRunner

    import cli

    monkeypatch.setenv("TWIN_SOURCES_FILE", str(tmp_path / "authors.yaml"))
    runner = CliRunner()
    args = [
        "ingest",
        "--author",
        "cli-author",
        str(BROKEN / "folder"),
        str(BROKEN / "linkedin_malformed"),
    ]
    first = runner.invoke(cli.app, args)
    assert first.exit_code == 0, first.output
    from cli.common import open_instance

    assert open_instance(load_settings()).has_dynamic_partition("authors", "cli-author")
    again = runner.invoke(cli.app, ["ingest", "--author", "cli-author"])
    assert again.exit_code == 0, again.output
    assert (
        "raw_posts" in again.output
        and len(load_sources(tmp_path / "authors.yaml").get("cli-author").sources) == 2
    )
    refused = runner.invoke(cli.app, ["ingest", "--author", "Bad Name", str(BROKEN / "folder")])
    assert refused.exit_code != 0
