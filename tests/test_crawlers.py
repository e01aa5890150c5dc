"""Crawlers against a local site on 127.0.0.1 serving recorded pages, and git against a local repository."""

import asyncio
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fixtures.recorded_site import RecordedSite, serve

from twin_platform.collection.collected import Collected
from twin_platform.collection.crawlers.dispatcher import (
    CrawlTarget,
    build_crawlers,
    choose_kind,
    crawl_async,
)
from twin_platform.collection.crawlers.github import (
    GitHubCrawler,
    RepoLimits,
    clone_and_read,
    git_repository_for_folder,
    normalise_remote,
)
from twin_platform.collection.crawlers.http import (
    BlockedAddressError,
    FetchError,
    check_address,
    decode,
)
from twin_platform.collection.crawlers.x import XCrawler
from twin_platform.settings import Settings, load_settings

AUTHOR = "ada-quill"


def make_settings(**overrides: object) -> Settings:
    values = {
        "crawl_allow_networks": ["127.0.0.1/32"],
        "crawl_backoff_s": 0.01,
        "crawl_retries": 2,
        "crawl_timeout_s": 2.0,
        "crawl_max_bytes": 1_000_000,
        "crawl_per_domain_rps": 1000.0,
    }
    return load_settings(**(values | overrides))


@pytest.fixture(scope="module")
def site() -> Iterator[RecordedSite]:
    with serve() as recorded:
        yield recorded


def crawl(
    *targets: CrawlTarget, settings: Settings | None = None, crawlers: dict | None = None
) -> Collected:
    return asyncio.run(crawl_async(list(targets), AUTHOR, settings or make_settings(), crawlers))


def only_failure(result: Collected) -> str:
    assert not result.documents, [d.url for d in result.documents]
    assert len(result.failures) == 1, result.failures
    return result.failures[0].reason


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("https://medium.com/@adaquill", "medium"),
        ("https://adaquill.medium.com/why-p50-1a2b", "medium"),
        ("https://adaquill.substack.com/p/ship-the-boring-thing-first", "substack"),
        ("https://github.com/ada-quill/quillstack", "github"),
        ("https://www.linkedin.com/posts/ada-quill_x", "linkedin"),
        ("https://x.com/adaquill/status/1", "x"),
        ("https://twitter.com/adaquill", "x"),
        ("https://example.org/blog/post", "article"),
        ("https://notmedium.com/@x", "article"),
    ],
)
def test_dispatcher_chooses_crawler_by_domain(url: str, kind: str) -> None:
    assert choose_kind(url) == kind


def test_medium_profile_goes_through_the_feed(site: RecordedSite) -> None:
    result = crawl(CrawlTarget(f"{site.base_url}/@ada", "medium"))
    assert not result.failures
    titles = {d.title: d for d in result.documents}
    assert set(titles) == {"Notes on on-call handovers", "Why I stopped trusting p50"}
    handovers = titles["Notes on on-call handovers"]
    assert handovers.platform == "medium" and handovers.category.value == "articles"
    assert "keep, fix or delete" in handovers.content
    assert handovers.published_at is not None and handovers.published_at.year == 2024
    assert "source=rss" not in handovers.url  # tracking parameters dropped from the key
    assert handovers.metadata["tags"] == ["on-call", "sre"]


def test_medium_article_page_keeps_the_story_not_the_chrome(site: RecordedSite) -> None:
    result = crawl(CrawlTarget(f"{site.base_url}/@ada/why-i-stopped-trusting-p50-1a2b3c", "medium"))
    [doc] = result.documents
    assert "800 ms for two consecutive 5-minute windows" in doc.content
    for chrome in ("Sign in", "cookies", "Text to speech", "__APOLLO_STATE__"):
        assert chrome not in doc.content
    assert doc.title == "Why I stopped trusting p50"


def test_medium_bot_check_falls_back_to_the_feed(site: RecordedSite) -> None:
    result = crawl(CrawlTarget(f"{site.base_url}/@ada/notes-on-on-call-handovers-4d5e6f", "medium"))
    [doc] = result.documents
    assert "Just a moment" not in doc.content and "keep, fix or delete" in doc.content
    assert doc.metadata["fallback"].startswith("page unavailable")


def test_bot_check_is_reported_and_never_stored(site: RecordedSite) -> None:
    blocked = crawl(CrawlTarget(f"{site.base_url}/@ada/not-in-the-feed-777", "medium"))
    assert "not found in the feed" in only_failure(blocked)
    served_as_200 = crawl(CrawlTarget(f"{site.base_url}/botcheck"))
    assert "bot-check page" in only_failure(served_as_200)


def test_substack_feed_and_summary_only_posts(site: RecordedSite) -> None:
    result = crawl(CrawlTarget(f"{site.base_url}/", "substack"))
    assert not result.failures
    docs = {d.title: d for d in result.documents}
    assert "140 lines, three days to production" in docs["Ship the boring thing first"].content
    retry = next(
        d for d in result.documents if "retries were the outage" in d.content
    )  # paid: read from its page
    assert "Subscribe for free" not in retry.content and "Comments" not in retry.content
    assert retry.url == f"{site.base_url}/p/the-cost-of-a-retry"
    assert {d.platform for d in result.documents} == {"substack"}


@contextmanager
def serve_feed(items: list[tuple[str, str, str]]) -> Iterator[str]:
    """A real RSS feed of (title, link, HTML body) on 127.0.0.1; yields its URL."""
    entries = "".join(
        f"<item><title>{title}</title><link>{link}</link>"
        f"<content:encoded><![CDATA[{body}]]></content:encoded></item>"
        for title, link, body in items
    )
    feed = (
        '<?xml version="1.0"?><rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel><title>Feed</title>'
        f"{entries}</channel></rss>"
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(feed)))
            self.end_headers()
            self.wfile.write(feed)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/feed"
    finally:
        server.shutdown()
        server.server_close()


def test_a_feed_entry_that_cannot_be_parsed_costs_only_itself() -> None:
    words = "Retries are load you add at the worst moment. " * 8
    items = [
        ("Good", "https://ada.example.org/p/good", f"<blockquote><p>{words}</p></blockquote>"),
        ("Bad link", "http://[not-an-address/p/bad", f"<p>{words}</p>"),  # its URL cannot parse
        ("Deep", "https://ada.example.org/p/deep", "<div>" * 1000 + f"<p>{words}</p>"),
    ]
    with serve_feed(items) as feed_url:
        result = crawl(CrawlTarget(feed_url, "substack"))
    assert [d.title for d in result.documents] == ["Good", "Deep"]
    assert result.documents[0].content.startswith("> Retries are load")
    assert result.documents[1].content == words.strip()
    [failure] = result.failures
    assert failure.location == "http://[not-an-address/p/bad"
    assert failure.reason.startswith("could not parse (ValueError: Invalid IPv6 URL")


def test_generic_article_extracts_main_content(site: RecordedSite) -> None:
    [doc] = crawl(CrawlTarget(f"{site.base_url}/articles/postgres-queue")).documents
    assert doc.platform == "web" and doc.category.value == "articles"
    assert "FOR UPDATE SKIP LOCKED" in doc.content and "5,000 jobs a second" in doc.content
    for chrome in ("crypto course", "All rights reserved", "Sign up for the newsletter", "Talks"):
        assert chrome not in doc.content
    assert doc.published_at is not None and doc.published_at.date().isoformat() == "2024-04-02"


@pytest.mark.parametrize(("status", "attempts"), [(404, 1), (500, 3), (429, 3)])
def test_http_errors_fail_clearly_after_bounded_retries(
    site: RecordedSite, status: int, attempts: int
) -> None:
    path = f"/status/{status}"
    before = site.hits[path]
    reason = only_failure(crawl(CrawlTarget(f"{site.base_url}{path}")))
    assert f"HTTP {status}" in reason
    assert (
        site.hits[path] - before == attempts
    )  # 404 is final; 429/500 are retried twice (crawl_retries=2)


@pytest.mark.parametrize("status", [503, 429])
def test_transient_errors_are_retried_with_backoff(site: RecordedSite, status: int) -> None:
    [doc] = crawl(CrawlTarget(f"{site.base_url}/flaky/{status}")).documents
    assert "SKIP LOCKED" in doc.content and site.hits[f"/flaky/{status}"] == 3


def test_redirects_loop_limit_and_target(site: RecordedSite) -> None:
    assert "redirect loop" in only_failure(crawl(CrawlTarget(f"{site.base_url}/redirect/loop-a")))
    [doc] = crawl(CrawlTarget(f"{site.base_url}/redirect/ok")).documents
    assert doc.url == f"{site.base_url}/articles/postgres-queue"
    too_many = crawl(
        CrawlTarget(f"{site.base_url}/redirect/ok"), settings=make_settings(crawl_max_redirects=0)
    )
    assert "more than 0 redirects" in only_failure(too_many)


def test_redirect_to_a_private_address_is_blocked(site: RecordedSite) -> None:
    reason = only_failure(crawl(CrawlTarget(f"{site.base_url}/redirect/metadata")))
    assert "non-public address 169.254.169.254" in reason


def test_huge_pages_are_cut_off(site: RecordedSite) -> None:
    streamed = only_failure(crawl(CrawlTarget(f"{site.base_url}/huge")))
    assert "exceeds the 1,000,000-byte limit" in streamed
    declared = only_failure(crawl(CrawlTarget(f"{site.base_url}/huge-declared")))
    assert "50,000,000 bytes exceeds" in declared


def test_non_html_is_refused(site: RecordedSite) -> None:
    assert "not an HTML page (content type application/pdf)" in only_failure(
        crawl(CrawlTarget(f"{site.base_url}/report.pdf"))
    )


def test_invalid_utf8_is_decoded_with_replacements(site: RecordedSite) -> None:
    [doc] = crawl(CrawlTarget(f"{site.base_url}/invalid-utf8")).documents
    assert doc.metadata["decode_errors"] >= 3
    assert "caf\ufffd" in doc.content and "SKIP LOCKED" in doc.content
    assert decode(b"ok \xff", "utf-8") == ("ok \ufffd", 1)
    assert decode("café".encode("latin-1"), "iso-8859-1") == ("café", 0)


def test_timeouts_fail_the_url_not_the_run(site: RecordedSite) -> None:
    settings = make_settings(crawl_timeout_s=0.3, crawl_retries=0)
    result = crawl(
        CrawlTarget(f"{site.base_url}/slow"),
        CrawlTarget(f"{site.base_url}/articles/postgres-queue"),
        settings=settings,
    )
    assert len(result.documents) == 1 and len(result.failures) == 1
    assert "Timeout" in result.failures[0].reason


def test_per_domain_concurrency_is_bounded(site: RecordedSite) -> None:
    site.max_in_flight = 0
    settings = make_settings(crawl_concurrency=16, crawl_per_domain_concurrency=2)
    result = crawl(
        *(CrawlTarget(f"{site.base_url}/bench/{i}?delay=0.1") for i in range(8)), settings=settings
    )
    assert len(result.documents) == 8
    assert site.max_in_flight == 2


def test_ssrf_guard_blocks_private_addresses_by_default(site: RecordedSite) -> None:
    settings = load_settings(crawl_allow_networks=[])
    reason = only_failure(
        crawl(CrawlTarget(f"{site.base_url}/articles/postgres-queue"), settings=settings)
    )
    assert "non-public address 127.0.0.1" in reason and "TWIN_CRAWL_ALLOW_NETWORKS" in reason
    for host in (
        "10.0.0.1",
        "192.168.1.10",
        "169.254.169.254",
        "::1",
        "0.0.0.0",
        "localhost",
        "fd00::1",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "2130706433",  # 127.0.0.1 as one decimal number
        "127.1",
        "100.64.0.1",  # carrier-grade NAT
        "224.0.0.1",  # multicast
    ):
        with pytest.raises(BlockedAddressError):
            check_address(host, ())
    assert check_address("93.184.215.14", ()) == ["93.184.215.14"]
    assert check_address("10.0.0.1", ("10.0.0.0/8",)) == ["10.0.0.1"]


@pytest.mark.parametrize(
    "url", ["ftp://example.org/x", "file:///etc/passwd", "http://user:pw@example.org/", "not a url"]
)
def test_bad_urls_are_refused(url: str) -> None:
    assert only_failure(crawl(CrawlTarget(url, "article")))


def test_linkedin_login_wall_points_to_the_export(site: RecordedSite) -> None:
    walled = only_failure(
        crawl(CrawlTarget(f"{site.base_url}/posts/ada-quill_three-line-rule", "linkedin"))
    )
    assert "Get a copy of your data" in walled
    profile = only_failure(crawl(CrawlTarget("https://www.linkedin.com/in/ada-quill")))
    assert "twin ingest --author NAME <export.zip>" in profile
    [post] = crawl(
        CrawlTarget(f"{site.base_url}/posts/ada-quill_public-three-line-rule", "linkedin")
    ).documents
    assert post.category.value == "posts" and "from 26 hours to 9" in post.content


def test_x_status_through_oembed_and_profiles_point_to_the_archive(site: RecordedSite) -> None:
    crawlers = build_crawlers(make_settings()) | {
        "x": XCrawler(oembed_endpoint=f"{site.base_url}/oembed")
    }
    [post] = crawl(
        CrawlTarget("https://x.com/adaquill/status/1744000000000000000"), crawlers=crawlers
    ).documents
    assert (
        post.content.startswith("Measure, then argue.")
        and post.url == "https://x.com/adaquill/status/1744000000000000000"
    )
    assert "Download an archive" in only_failure(
        crawl(CrawlTarget("https://x.com/adaquill"), crawlers=crawlers)
    )


# GitHub: shallow clone of a local repository.


def _commit(repo: Path) -> None:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        "PATH": "/usr/bin:/bin",
    }
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "init"]):
        subprocess.run(["git", *args], cwd=repo, check=True, env=env, capture_output=True)


@pytest.fixture
def local_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "tool"
    files = {
        "README.md": "# tool\n\nMeasure, then argue.\n",
        "src/tool/core.py": "def p99(values):\n    return sorted(values)[int(len(values) * 0.99)]\n",
        "pyproject.toml": "[project]\nname = 'tool'\n",
        "package-lock.json": "{}",
        "uv.lock": "version = 1\n",
        "node_modules/left-pad/index.js": "module.exports = 1\n",
        "vendor/lib.py": "x = 1\n",
        "dist/tool.js": "var x\n",
        "static/app.min.js": "var a=1;\n",
        "big.txt": "x" * 5_000,
    }
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    (repo / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    (repo / "data.bin.txt").write_bytes(b"looks like text\x00but is not")
    _commit(repo)
    return repo


def test_git_clone_keeps_text_and_skips_noise(local_repo: Path) -> None:
    doc = clone_and_read(
        str(local_repo),
        AUTHOR,
        "https://github.com/ada-quill/tool",
        RepoLimits(max_file_bytes=1_000),
    )
    assert doc.category.value == "repositories" and doc.platform == "github"
    assert doc.metadata["files"] == ["README.md", "pyproject.toml", "src/tool/core.py"]
    assert doc.metadata["skipped"] == {
        "lock file": 2,
        "vendored or generated": 3,
        "minified": 1,
        "binary": 2,
        "over the file size limit": 1,
    }
    assert len(doc.metadata["commit"]) == 40
    assert "## src/tool/core.py\n\n```python\ndef p99" in doc.content
    assert doc.content.startswith("# ada-quill/tool\n\n## README.md")


def test_git_total_size_limit(local_repo: Path) -> None:
    doc = clone_and_read(
        str(local_repo),
        AUTHOR,
        local_repo.as_uri(),
        RepoLimits(max_file_bytes=10_000, max_total_bytes=100),
    )
    assert doc.metadata["skipped"]["over the repository size limit"] >= 1
    assert doc.metadata["bytes"] <= 100


def test_git_failures_are_clear(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="git clone failed"):
        clone_and_read(str(tmp_path / "missing"), AUTHOR, "https://github.com/a/b", RepoLimits())
    crawler = GitHubCrawler()
    result = asyncio.run(crawler_run(crawler, "https://10.1.2.3/owner/repo"))
    assert "non-public address" in only_failure(result)
    assert (
        normalise_remote("https://github.com/Ada/quillstack.git/")
        == "https://github.com/Ada/quillstack"
    )
    with pytest.raises(FetchError):
        normalise_remote("http://github.com/a/b")


async def crawler_run(crawler: GitHubCrawler, url: str) -> Collected:
    from twin_platform.collection.crawlers.http import HttpPolicy, SafeClient

    async with SafeClient(HttpPolicy()) as client:
        return await crawler.crawl(url, AUTHOR, client)


def test_folder_becomes_a_reproducible_repository(tmp_path: Path) -> None:
    folder = tmp_path / "quill"
    (folder / "pkg").mkdir(parents=True)
    (folder / "README.md").write_text("# quill\n")
    (folder / "pkg" / "a.py").write_text("A = 1\n")
    first = git_repository_for_folder(folder, tmp_path / "cache")
    again = git_repository_for_folder(folder, tmp_path / "cache")
    assert first == again and (first / ".git").is_dir()
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=first, capture_output=True, text=True, check=True
    ).stdout
    rebuilt = git_repository_for_folder(folder, tmp_path / "other-cache")
    assert (
        subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=rebuilt, capture_output=True, text=True, check=True
        ).stdout
        == head
    )
