"""Importers against the sample exports (data/sample/exports) and deliberately broken ones (tests/fixtures/exports)."""

import shutil
import zipfile
from pathlib import Path

import pytest

from twin_platform.collection.importers import (
    ExportError,
    ImportOptions,
    detect_kind,
    import_export,
)

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "exports"
BROKEN = Path(__file__).parent / "fixtures" / "exports"
AUTHOR = "ada-quill"


def zip_folder(folder: Path, target: Path, wrap: str | None = None) -> Path:
    """Zip `folder`, optionally inside a top-level folder as real exports often are."""
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                name = path.relative_to(folder).as_posix()
                archive.write(path, f"{wrap}/{name}" if wrap else name)
    return target


@pytest.mark.parametrize("kind", ["substack", "linkedin", "medium", "x"])
def test_export_kind_is_detected(kind: str) -> None:
    assert detect_kind(SAMPLE / kind) == kind


def test_detection_falls_back_to_a_plain_folder() -> None:
    assert detect_kind(BROKEN / "folder") == "folder"


def test_substack_export() -> None:
    result = import_export(
        SAMPLE / "substack",
        AUTHOR,
        options=ImportOptions(base_url="https://adaquill.substack.com/"),
    )
    assert not result.failures
    assert len(result.documents) == 28
    assert [s.reason for s in result.skipped] == [
        "draft 141200016.draft-notes-on-cost-per-query (not published)"
    ]
    p50 = next(d for d in result.documents if d.title == "Why I stopped trusting p50")
    assert p50.url == "https://adaquill.substack.com/p/why-i-stopped-trusting-p50"
    assert p50.category.value == "articles" and p50.platform == "substack"
    assert (
        p50.published_at is not None and p50.published_at.isoformat() == "2024-02-06T08:00:00+00:00"
    )
    assert (
        "## Why I alert on p99 now" in p50.content
        and "- Alert when p99 latency is above 800 ms" in p50.content
    )
    assert p50.metadata["subtitle"].startswith("The median hid 4%")


def test_substack_without_base_url_uses_stable_file_uris() -> None:
    first = import_export(SAMPLE / "substack", AUTHOR).documents
    again = import_export(SAMPLE / "substack", AUTHOR).documents
    assert [d.url for d in first] == [d.url for d in again]
    assert all(d.url.startswith("file://") for d in first)


def test_linkedin_export_posts_and_articles() -> None:
    result = import_export(SAMPLE / "linkedin", AUTHOR)
    assert not result.failures
    posts = [d for d in result.documents if d.category.value == "posts"]
    articles = [d for d in result.documents if d.category.value == "articles"]
    assert len(posts) == 26 and len(articles) == 3
    rule = next(p for p in posts if "three-line rule" in p.content)
    assert rule.url.startswith("https://www.linkedin.com/feed/update/urn%3Ali%3Aactivity%3A")
    assert "\n\nWalk over." in rule.content  # multi-line CSV cells keep their paragraphs
    assert (
        rule.published_at is not None
        and rule.published_at.isoformat() == "2024-01-15T08:42:10+00:00"
    )
    handover = next(a for a in articles if a.title == "The on-call handover I wish I had inherited")
    assert (
        handover.url
        == "https://www.linkedin.com/pulse/on-call-handover-i-wish-had-inherited-ada-quill"
    )
    assert (
        handover.published_at is not None
        and handover.published_at.isoformat() == "2024-07-08T10:02:00+00:00"
    )
    assert "Created on" not in handover.content and handover.content.startswith(
        "My first on-call rotation"
    )


def test_medium_export() -> None:
    result = import_export(SAMPLE / "medium", AUTHOR)
    assert not result.failures and len(result.skipped) == 1
    assert len(result.documents) == 3
    doc = next(d for d in result.documents if d.title == "Small models, honest evals")
    assert doc.url == "https://medium.com/@adaquill/small-models-honest-evals-3f2a9c1d7e0b"
    assert not doc.content.startswith("### Small models")  # the repeated title heading is dropped
    assert "from 31 to 12" in doc.content


def test_x_archive() -> None:
    result = import_export(SAMPLE / "x", AUTHOR)
    assert not result.failures and [s.reason for s in result.skipped] == ["retweet"]
    assert len(result.documents) == 30
    assert all(d.url.startswith("https://x.com/adaquill/status/") for d in result.documents)
    assert all(d.category.value == "posts" and d.platform == "x" for d in result.documents)


@pytest.mark.parametrize("kind", ["substack", "linkedin", "medium", "x"])
def test_zip_and_folder_give_the_same_documents(kind: str, tmp_path: Path) -> None:
    archive = zip_folder(SAMPLE / kind, tmp_path / f"{kind}.zip", wrap=f"{kind}-export-2025")
    from_zip = import_export(archive, AUTHOR, options=ImportOptions(base_url="https://a.example"))
    from_folder = import_export(
        SAMPLE / kind, AUTHOR, options=ImportOptions(base_url="https://a.example")
    )
    key = lambda d: (d.title or "", d.content_hash)  # noqa: E731
    assert sorted(map(key, from_zip.documents)) == sorted(map(key, from_folder.documents))
    assert not list(tmp_path.glob("twin-export-*"))


def test_malformed_substack_rows_fail_one_by_one() -> None:
    result = import_export(BROKEN / "substack_malformed", AUTHOR)
    assert [d.title for d in result.documents] == ["A good post"]
    reasons = sorted(f"{f.location}: {f.reason}" for f in result.failures)
    assert any("line 3: malformed row" in r for r in reasons)
    assert any("line 4: posts/900003.missing-html.html is missing" in r for r in reasons)
    assert any("line 5: malformed row" in r for r in reasons)  # ../../etc/passwd never read
    assert any("900006.empty-body.html: no text" in r for r in reasons)
    assert len(result.failures) == 4 and len(result.skipped) == 1


def test_malformed_linkedin_rows_fail_one_by_one() -> None:
    result = import_export(BROKEN / "linkedin_malformed", AUTHOR)
    assert len(result.documents) == 2
    assert result.documents[1].content == 'Quoted "words" survive,\nand so do line breaks.'
    assert sorted(f.reason for f in result.failures) == [
        "malformed row (wrong number of fields)",
        "no ShareLink URL",
    ]
    assert [s.reason for s in result.skipped] == ["reshare without text"]


def test_linkedin_csv_without_required_columns(tmp_path: Path) -> None:
    (tmp_path / "Shares.csv").write_text("When,What\n2024-01-01,hello\n")
    result = import_export(tmp_path, AUTHOR, kind="linkedin")
    assert (
        not result.documents
        and "missing columns ['Date', 'ShareLink', 'ShareCommentary']" in result.failures[0].reason
    )


def test_broken_medium_html_fails_alone() -> None:
    result = import_export(BROKEN / "medium_malformed", AUTHOR)
    assert [d.title for d in result.documents] == ["SQL for the next person"]
    [failure] = result.failures
    assert (
        failure.location.endswith("Broken-ffffffffffff.html")
        and "no body section" in failure.reason
    )
    assert len(result.skipped) == 1


def test_broken_x_archive_file_fails_alone() -> None:
    result = import_export(BROKEN / "x_malformed", AUTHOR, kind="x")
    assert [d.content for d in result.documents] == [
        "Percentiles do not average. Merge the histograms & then compute."
    ]
    locations = {Path(f.location).name for f in result.failures}
    assert locations == {"tweets-part1.js item 1", "tweets.js"}
    assert [s.reason for s in result.skipped] == ["retweet"]


def test_plain_folder() -> None:
    result = import_export(BROKEN / "folder", AUTHOR)
    docs = {d.title: d for d in result.documents}
    assert set(docs) == {"Postgres is a fine queue", "On dashboards", "short note", "latin1"}
    queue = docs["Postgres is a fine queue"]
    assert (
        queue.category.value == "articles" and queue.url == "https://ada.example.org/postgres-queue"
    )
    assert queue.published_at is not None and queue.published_at.date().isoformat() == "2024-04-02"
    assert docs["short note"].category.value == "posts" and docs["short note"].platform == "local"
    assert docs["latin1"].metadata["decode_errors"] == 1
    assert "60 dashboards" in docs["On dashboards"].content
    assert [f.reason for f in result.failures] == ["empty file"]
    assert [s.location for s in result.skipped] == ["diagram.png"]


def test_not_a_zip(tmp_path: Path) -> None:
    bogus = tmp_path / "export.zip"
    bogus.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(ExportError, match="not a zip file"):
        import_export(bogus, AUTHOR)
    with pytest.raises(ExportError, match="no such file or folder"):
        import_export(tmp_path / "missing.zip", AUTHOR)


def test_zip_with_path_traversal_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("Shares.csv", "Date,ShareLink,ShareCommentary\n")
        zf.writestr("../../outside.txt", "gotcha")
    with pytest.raises(ExportError, match="unsafe path"):
        import_export(archive, AUTHOR)
    assert not (tmp_path.parent / "outside.txt").exists()


def test_zip_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    archive = zip_folder(SAMPLE / "linkedin", tmp_path / "li.zip")
    with pytest.raises(ExportError, match="over the 1,000-byte limit"):
        import_export(archive, AUTHOR, max_bytes=1_000)


def test_truncated_zip(tmp_path: Path) -> None:
    archive = zip_folder(SAMPLE / "x", tmp_path / "x.zip")
    data = archive.read_bytes()
    broken = tmp_path / "broken.zip"
    broken.write_bytes(data[:200] + data[-100:])
    with pytest.raises(ExportError):
        import_export(broken, AUTHOR)


def test_unknown_kind(tmp_path: Path) -> None:
    shutil.copytree(BROKEN / "folder", tmp_path / "f")
    with pytest.raises(ExportError, match="unknown export kind"):
        import_export(tmp_path / "f", AUTHOR, kind="myspace")


# Exports with rich markup (tests/fixtures/exports/rich_*): what the Markdown keeps.


def indent_of(content: str, item: str) -> int:
    """Indentation of the list line that holds `item`."""
    [line] = [line for line in content.splitlines() if line.rstrip().endswith(item)]
    return len(line) - len(line.lstrip())


def test_rich_substack_post_keeps_its_structure() -> None:
    result = import_export(
        BROKEN / "rich_substack",
        AUTHOR,
        options=ImportOptions(base_url="https://adaquill.substack.com"),
    )
    assert not result.failures and [s.reason for s in result.skipped] == [
        "draft 200002.notes-for-later (not published)"
    ]
    [post] = result.documents
    assert post.url == "https://adaquill.substack.com/p/retries-with-a-budget"
    content = post.content
    assert (
        "> A retry budget of 10% would have prevented our worst outage.\n>\n"
        "> Nobody reads the retry settings until the day they matter." in content
    )
    assert "## The rule I use" in content and "1. Budget retries per client:" in content
    assert 0 < indent_of(content, "at most 10% of requests") < indent_of(content, "backoff")
    assert (
        "| attempt | delay |\n| --- | --- |\n| 1 | 100 ms |\n| 2 | 400 ms |\n| 3 | 1.6 s |"
        in content
    )
    assert (
        "```\ndef backoff(attempt: int) -> float:\n"
        "    return 0.1 * 4 ** (attempt - 1)  # seconds, before jitter\n```" in content
    )
    assert (
        "![Requests per second during the retry storm](https://substackcdn.com/image/fetch/retry-storm.png)"
        in content
    )
    assert "The storm, minute by minute." in content
    assert "Restack" not in content and "<svg" not in content  # the image's buttons and icons
    assert content.endswith("Keep the promise small.")


def test_rich_medium_post_keeps_its_structure() -> None:
    result = import_export(BROKEN / "rich_medium", AUTHOR)
    assert not result.failures
    [post] = result.documents
    assert post.title == "Queues in Postgres, honestly"
    assert post.url == "https://medium.com/@adaquill/queues-in-postgres-honestly-5e6f7a8b9c0d"
    content = post.content
    assert content.startswith("We ran our job queue")  # no repeated title, no divider rule
    assert (
        "> The boring database was the right queue.\n>\n> We only had to stop fighting it."
        in content
    )
    assert "#### The three rules" in content and "1. One table per queue" in content
    assert indent_of(content, "One table per queue") < indent_of(content, "pending rows")
    assert indent_of(content, "pending rows") < indent_of(content, "capped at five")
    assert "3. Finished jobs move to an archive table" in content
    assert (
        "```\nSELECT id FROM jobs\nWHERE state = 'pending'\nORDER BY id\nFOR UPDATE SKIP LOCKED\n"
        "LIMIT 10;\n```" in content
    )  # Medium's <br> line breaks inside <pre> become plain code lines
    assert "| workers | jobs/s |\n| --- | --- |\n| 1 | 900 |\n| 8 | 5,000 |" in content
    assert (
        "![Jobs per second by worker count](https://cdn-images-1.medium.com/max/800/1*queue-throughput.png)"
        in content
    )


def test_rich_linkedin_export_keeps_its_structure() -> None:
    result = import_export(BROKEN / "rich_linkedin", AUTHOR)
    assert not result.failures and not result.skipped
    posts = [d for d in result.documents if d.category.value == "posts"]
    [article] = [d for d in result.documents if d.category.value == "articles"]
    assert len(posts) == 2
    assert posts[0].content.startswith("Three questions before any migration:\n\n1. What breaks")
    assert posts[0].content.endswith(
        '"If you cannot answer the third, you are not migrating, you are hoping."'
    )
    assert (
        posts[1].metadata["shared_url"] == "https://adaquill.substack.com/p/retries-with-a-budget"
    )
    content = article.content
    assert article.title == "Backfills are a product"
    assert article.published_at is not None and article.published_at.isoformat().startswith(
        "2024-09-03T07:30"
    )
    assert content.startswith("Every team I have joined")  # cover image without alt text dropped
    assert "> A backfill is a deploy that touches every row you have ever written." in content
    assert "- An owner\n  - who is not on call that week\n- A dry run\n" in content
    assert indent_of(content, "with the row counts written down") < indent_of(content, "1. before")
    assert "| events | 1.2 billion | 9 |\n| orders | 40 million | 0.5 |" in content
    assert "```\nmake backfill TABLE=events FROM=2023-01-01 BATCH=50000 DRY_RUN=1\n```" in content
    assert (
        "![Rows per minute during the events backfill](https://media.licdn.com/dms/image/backfill-progress.png)"
        in content
    )
    assert "Created on" not in content and "Published on" not in content


def test_rich_x_archive_keeps_text_as_written() -> None:
    result = import_export(BROKEN / "rich_x", AUTHOR)
    assert not result.failures and [s.reason for s in result.skipped] == ["retweet"]
    quote, checklist = result.documents
    assert quote.url == "https://x.com/adaquill/status/1790000000000000001"
    assert quote.content == (
        "> A retry budget of 10% would have prevented our worst outage.\n\n"
        "Still true. Budget retries & alert when the budget runs out."
    )
    assert checklist.content.startswith("My backfill checklist:\n- an owner\n- a dry run\n")
    assert "if p99 > 800 ms && p50 < 200 ms, look at the tail." in checklist.content


def test_rich_folder_keeps_its_structure() -> None:
    result = import_export(BROKEN / "rich_folder", AUTHOR)
    assert not result.failures
    docs = {d.title: d for d in result.documents}
    page = docs["Field notes on dashboards"].content
    assert page.startswith("# Field notes on dashboards")  # no navigation, script or style
    assert "analytics" not in page and "max-width" not in page and "Home" not in page
    assert "> We had 60 dashboards and nobody had opened 41 of them in 90 days." in page
    assert "- One dashboard per service\n  - latency: p50, p99 and max\n  - errors by type" in page
    assert "| checkout latency | 212 |\n| legacy batch v2 | 0 |" in page
    assert "```\nSELECT dashboard, max(opened_at) FROM views GROUP BY dashboard;\n```" in page
    assert "![Dashboards by last opened date](images/dashboards-opened.png)" in page
    markdown = docs["Retry budgets in one page"]
    assert markdown.category.value == "articles"  # front matter says so; Markdown kept as written
    assert markdown.content.startswith("# Retry budgets in one page\n\n> A retry budget")
    assert markdown.content.endswith("```python\ndelay = 0.1 * 4 ** (attempt - 1)\n```")


def test_a_broken_file_costs_only_itself(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    shutil.copytree(BROKEN / "rich_folder", folder)
    (folder / "scan.html").write_bytes(bytes(range(256)) * 4)  # binary garbage
    (folder / "bad-date.md").write_text("---\ndate: 2024-13-45\n---\nMonth thirteen.\n")
    deep = "<div>" * 5000 + "<p>Still here at depth 5000.</p>" + "</div>" * 5000
    (folder / "deep.html").write_text(deep)
    result = import_export(folder, AUTHOR)
    titles = {d.title for d in result.documents}
    assert {"Field notes on dashboards", "Retry budgets in one page", "deep"} <= titles
    assert (
        next(d for d in result.documents if d.title == "deep").content
        == "Still here at depth 5000."
    )
    failures = {Path(f.location).name: f.reason for f in result.failures}
    assert failures == {
        "scan.html": "binary file",
        "bad-date.md": "could not parse (ValueError: month must be in 1..12)",
    }
    assert all(Path(f.location).is_absolute() for f in result.failures)


# -- the reference system's warehouse export (generated pages, fixtures/scraped) ----------------
@pytest.fixture(scope="module")
def reference_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fixtures.scraped.pages import write_export

    root = tmp_path_factory.mktemp("reference")
    return write_export(root / "data" / "data_warehouse_raw_data").folder


def test_reference_export_imports_the_matching_user(reference_export: Path) -> None:
    assert detect_kind(reference_export.parents[1]) == "reference"
    result = import_export(reference_export.parents[1], "nora-vance")
    assert not result.failures and len(result.documents) == 10
    assert {d.platform for d in result.documents} == {"substack", "medium", "web"}
    assert all(d.author == "nora-vance" for d in result.documents)
    sourdough = next(d for d in result.documents if "sourdough" in d.url)
    assert (
        sourdough.url
        == "https://noravance.substack.com/p/why-my-sourdough-stopped-rising-in-winter"
    )
    assert sourdough.title == "Why my sourdough stopped rising in winter"  # " - Nora Vance" gone
    assert sourdough.metadata["site"] == "noravance.substack.com"
    assert sourdough.published_at is not None and sourdough.published_at.year == 2024
    again = import_export(reference_export, "nora-vance").documents
    assert [(d.url, d.content_hash) for d in again] == [
        (d.url, d.content_hash) for d in result.documents
    ]


def test_reference_export_in_a_zip(reference_export: Path, tmp_path: Path) -> None:
    archive = zip_folder(
        reference_export, tmp_path / "warehouse.zip", wrap="data_warehouse_raw_data"
    )
    assert len(import_export(archive, "tomas-reyes").documents) == 2


def test_reference_export_without_a_matching_user_lists_its_users(
    reference_export: Path,
) -> None:
    with pytest.raises(ExportError) as error:
        import_export(reference_export, "nora")
    message = str(error.value)
    assert "--author 'nora'" in message
    assert "nora-vance (Nora Vance, 10 documents)" in message
    assert "tomas-reyes (Tomas Reyes, 2 documents)" in message


def test_reference_posts_and_repositories(tmp_path: Path) -> None:
    """LinkedIn posts have no link (their id names them); repository files skip what the GitHub
    crawler skips, secrets included."""
    import json

    user = {"author_id": "u1", "author_full_name": "Ada Quill"}
    posts = [{**user, "_id": "p1", "platform": "linkedin", "content": {"text": "Ship small."}}]
    tree = {"README.md": "# tool", ".env": "TOKEN=abc", "src/a.py": "x = 1", "uv.lock": "lock"}
    repos = [
        {
            **user,
            "_id": "r1",
            "platform": "github",
            "name": "tool",
            "link": "https://github.com/a/tool",
        }
        | {"content": tree}
    ]
    (tmp_path / "PostDocument.json").write_text(json.dumps(posts))
    (tmp_path / "RepositoryDocument.json").write_text(json.dumps(repos))
    post, repo = import_export(tmp_path, "ada-quill").documents
    assert post.url == "urn:llm-engineers-handbook:post:p1" and post.platform == "linkedin"
    assert repo.category.value == "repositories" and repo.title == "tool"
    assert "## src/a.py" in repo.content and "TOKEN=abc" not in repo.content
    assert repo.metadata["skipped"] == {"secrets": 1, "lock file": 1}


def test_a_source_that_yields_nothing_is_a_failure_saying_what_it_skipped(tmp_path: Path) -> None:
    (tmp_path / "export.json").write_text("[]")
    (tmp_path / "notes.csv").write_text("a,b")
    result = import_export(tmp_path, AUTHOR)
    assert not result.documents and len(result.failures) == 1
    reason = result.failures[0].reason
    assert reason.startswith("no documents found (read as a folder export); skipped 2:")
    assert "export.json (not a Markdown, HTML or text file)" in reason and "notes.csv" in reason
    empty = tmp_path / "empty"
    empty.mkdir()
    assert import_export(empty, AUTHOR).failures[0].reason.endswith("it is empty")
