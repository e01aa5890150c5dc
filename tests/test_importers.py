"""Importers against the sample exports (data/sample/exports) and deliberately broken ones (tests/fixtures/exports)."""

import shutil
import zipfile
from pathlib import Path

import pytest

from twin_platform.importers import ExportError, detect_kind, import_export

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
    result = import_export(SAMPLE / "substack", AUTHOR, base_url="https://adaquill.substack.com/")
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
    from_zip = import_export(archive, AUTHOR, base_url="https://a.example")
    from_folder = import_export(SAMPLE / kind, AUTHOR, base_url="https://a.example")
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
