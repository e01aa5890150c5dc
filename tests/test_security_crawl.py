"""Crawl hardening against real local servers: feed bodies that point elsewhere, IPv6 transition
addresses, allow-list validation, per-source networks, and deadlines against trickling servers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic import ValidationError

from twin_platform.collection.collected import Collected
from twin_platform.collection.crawlers.dispatcher import CrawlTarget, crawl_async
from twin_platform.collection.crawlers.http import BlockedAddressError, check_address
from twin_platform.collection.ingest import collect
from twin_platform.collection.sources import SourceSpec, load_sources
from twin_platform.settings import Settings, load_settings

AUTHOR = "ada-quill"
ARTICLE = (Path(__file__).parent / "fixtures" / "pages" / "generic_article.html").read_bytes()
WORDS = "Retries are load you add at the worst moment, so budget them. " * 6


def make_settings(**overrides: object) -> Settings:
    values = {
        "crawl_allow_networks": ["127.0.0.1/32"],
        "crawl_backoff_s": 0.01,
        "crawl_retries": 0,
        "crawl_timeout_s": 2.0,
        "crawl_per_domain_rps": 1000.0,
    }
    return load_settings(**(values | overrides))


def crawl(*targets: CrawlTarget, settings: Settings | None = None) -> Collected:
    return asyncio.run(crawl_async(list(targets), AUTHOR, settings or make_settings()))


def rss(items: list[tuple[str, str, str]]) -> bytes:
    """An RSS 2.0 feed of (title, link, HTML body)."""
    entries = "".join(
        f"<item><title>{title}</title><link>{link}</link>"
        f"<description><![CDATA[{body}]]></description></item>"
        for title, link, body in items
    )
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Feed</title>'
        f"{entries}</channel></rss>"
    ).encode()


Handler = Callable[[BaseHTTPRequestHandler], None]


@contextmanager
def server(routes: dict[str, Handler]) -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on 127.0.0.1; yields its base URL and the paths it was asked for."""
    hits: list[str] = []

    class RequestHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            route = routes.get(self.path)
            if route is None:
                send(self, 404, "text/html", b"<h1>Not found</h1>")
            else:
                route(self)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    finally:
        httpd.shutdown()
        httpd.server_close()


def send(handler: BaseHTTPRequestHandler, status: int, content_type: str, body: bytes) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def static(content_type: str, body: bytes) -> Handler:
    return lambda handler: send(handler, 200, content_type, body)


def trickle(body: bytes, chunks: int, interval_s: float) -> Handler:
    """Send `body` in `chunks` pieces, `interval_s` apart: each read is quick, the whole is slow."""

    def handle(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html; charset=utf-8")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        size = -(-len(body) // chunks)
        try:
            for start in range(0, len(body), size):
                handler.wfile.write(body[start : start + size])
                handler.wfile.flush()
                time.sleep(interval_s)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should

    return handle


def only_failure(result: Collected) -> str:
    assert not result.documents, [d.url for d in result.documents]
    assert len(result.failures) == 1, result.failures
    return result.failures[0].reason


# 1. A feed body is parsed as data, never followed as a URL or opened as a path.


def test_a_feed_body_that_is_a_url_is_not_fetched() -> None:
    canary_feed = rss([("Internal", "https://ada.example.org/p/internal", f"<p>{WORDS}</p>")])
    with server({"/latest/meta-data/": static("application/rss+xml", canary_feed)}) as (
        canary,
        canary_hits,
    ):
        body = f"{canary}/latest/meta-data/".encode()
        with server({"/feed": static("application/rss+xml", body)}) as (feed_host, _):
            result = crawl(CrawlTarget(f"{feed_host}/feed", "substack"))
    assert canary_hits == []
    assert "not a readable RSS/Atom feed" in only_failure(result)


def test_a_feed_body_that_is_a_path_is_not_opened(tmp_path: Path) -> None:
    local = tmp_path / "secret-feed.xml"
    local.write_bytes(rss([("Local", "https://ada.example.org/p/local", f"<p>{WORDS}</p>")]))
    with server({"/feed": static("application/rss+xml", str(local).encode())}) as (feed_host, _):
        result = crawl(CrawlTarget(f"{feed_host}/feed", "substack"))
    assert "not a readable RSS/Atom feed" in only_failure(result)


def test_feeds_are_parsed_from_bytes_with_their_declared_charset() -> None:
    feed = rss([("Café", "https://ada.example.org/p/cafe", f"<p>{WORDS}</p>")]).replace(
        b'<?xml version="1.0"?>', b'<?xml version="1.0" encoding="iso-8859-1"?>'
    )
    feed = feed.decode("utf-8").encode("iso-8859-1")
    content_type = "application/rss+xml; charset=iso-8859-1"
    with server({"/feed": static(content_type, feed)}) as (feed_host, _):
        [doc] = crawl(CrawlTarget(f"{feed_host}/feed", "substack")).documents
    assert doc.title == "Café" and doc.url == "https://ada.example.org/p/cafe"


def test_an_html_page_that_is_only_a_url_is_not_fetched() -> None:
    """htmldate (under trafilatura) downloads a string that looks like a URL when given one:
    the extractor must only ever see the page as a document, never as an address."""
    with (
        server({"/x": static("text/html", ARTICLE)}) as (canary, canary_hits),
        server({"/page": static("text/html", f"{canary}/x".encode())}) as (host, _),
    ):
        result = crawl(CrawlTarget(f"{host}/page", "article"))
    assert canary_hits == []
    assert "no main content" in only_failure(result)


# 2. IPv6 transition addresses are unwrapped; allow-lists are validated, also per source.


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b:1::a00:1",  # local-use NAT64 prefix
        "64:ff9b:1:ffff::5db8:d70e",
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "::a00:1",  # IPv4-compatible 10.0.0.1
        "::5db8:d70e",  # IPv4-compatible (deprecated) of a public address
        "fec0::1",  # site-local
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo of 10.0.0.1
    ],
)
def test_ipv6_transition_addresses_of_private_space_are_blocked(address: str) -> None:
    with pytest.raises(BlockedAddressError):
        check_address(address, ())


def test_transition_addresses_of_public_space_pass_and_allow_lists_see_the_ipv4() -> None:
    assert check_address("64:ff9b::5db8:d70e", ()) == ["64:ff9b::5db8:d70e"]  # 93.184.215.14
    assert check_address("2002:5db8:d70e::1", ()) == ["2002:5db8:d70e::1"]
    assert check_address("64:ff9b::a00:1", ("10.0.0.0/8",)) == ["64:ff9b::a00:1"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("not-a-network", "not an IP network"),
        ("10.0.0.0/33", "not an IP network"),
        ("0.0.0.0/0", "too broad"),
        ("::/0", "too broad"),
        ("0.0.0.0/1", "too broad"),
        ("8.0.0.0/8", "too broad"),  # public space
        ("100.0.0.0/8", "too broad"),  # mostly public, with carrier-grade NAT inside
        ("2000::/3", "too broad"),
        ("::ffff:0:0/96", "too broad"),  # every IPv4 address, mapped
    ],
)
def test_allow_networks_are_validated_at_settings_load(
    entry: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValidationError, match=message):
        load_settings(crawl_allow_networks=[entry])
    monkeypatch.setenv("TWIN_CRAWL_ALLOW_NETWORKS", f'["{entry}"]')
    with pytest.raises(ValidationError, match="crawl_allow_networks"):
        load_settings()


def test_narrow_allow_networks_are_accepted_in_canonical_form() -> None:
    entries = ["10.0.0.0/8", "127.0.0.1", "192.168.1.0/24", "fd00::/8", "203.0.113.7/32"]
    settings = load_settings(crawl_allow_networks=entries)
    assert settings.crawl_allow_networks == [
        "10.0.0.0/8",
        "127.0.0.1/32",
        "192.168.1.0/24",
        "fd00::/8",
        "203.0.113.7/32",
    ]


def test_a_source_may_allow_its_own_networks(tmp_path: Path) -> None:
    with server({"/a": static("text/html", ARTICLE), "/b": static("text/html", ARTICLE)}) as (
        base,
        hits,
    ):
        authors = tmp_path / "authors.yaml"
        authors.write_text(
            "authors:\n"
            f"  - name: {AUTHOR}\n"
            "    sources:\n"
            f"      - url: {base}/a\n"
            "        allow_networks: ['127.0.0.1/32']\n"
            f"      - {base}/b\n"
        )
        author = load_sources(authors).get(AUTHOR)
        assert author is not None
        collected, _ = collect(author, make_settings(crawl_allow_networks=[]))
    assert [d.url for d in collected.documents] == [f"{base}/a"]
    [failure] = collected.failures
    assert failure.location == f"{base}/b" and "non-public address 127.0.0.1" in failure.reason
    assert hits == ["/a"]


def test_a_source_cannot_allow_everything() -> None:
    with pytest.raises(ValidationError, match="too broad"):
        SourceSpec(url="https://example.org/", allow_networks=["0.0.0.0/0"])
    with pytest.raises(ValidationError, match="not an IP network"):
        SourceSpec(url="https://example.org/", allow_networks=["intranet"])


# 10. Deadlines per request and per source, against servers that trickle bytes.


def test_a_trickling_response_is_cut_at_the_request_deadline() -> None:
    """Every byte arrives well within the read timeout; the whole never arrives in time."""
    with server({"/slow": trickle(ARTICLE, chunks=60, interval_s=0.1)}) as (base, _):
        settings = make_settings(crawl_timeout_s=1.0, crawl_request_deadline_s=1.5, crawl_retries=2)
        started = time.monotonic()
        reason = only_failure(crawl(CrawlTarget(f"{base}/slow", "article"), settings=settings))
        elapsed = time.monotonic() - started
    assert "1.5 s request deadline" in reason
    assert elapsed < 4


def test_a_source_stops_at_its_deadline_and_keeps_what_it_collected() -> None:
    """A feed of summary-only entries: each post page is slow but within the request deadline."""
    names = [f"post-{i}" for i in range(6)]
    routes: dict[str, Handler] = {
        f"/p/{name}": trickle(ARTICLE, chunks=5, interval_s=0.15) for name in names
    }
    with server(routes) as (base, hits):
        feed = rss([(name, f"{base}/p/{name}", "<p>Summary only.</p>") for name in names])
        routes["/feed"] = static("application/rss+xml", feed)
        settings = make_settings(crawl_request_deadline_s=5, crawl_source_deadline_s=2.0)
        started = time.monotonic()
        result = crawl(CrawlTarget(f"{base}/feed", "substack"), settings=settings)
        elapsed = time.monotonic() - started
    assert 1 <= len(result.documents) <= 3
    assert len(result.documents) + len(result.failures) == len(names)
    assert all("2 s source deadline" in f.reason for f in result.failures)
    assert len(hits) <= 5 and elapsed < 3.5


def test_deadline_settings_are_validated() -> None:
    with pytest.raises(ValidationError, match="crawl_request_deadline_s"):
        load_settings(crawl_request_deadline_s=0)
    with pytest.raises(ValidationError, match="crawl_source_deadline_s"):
        load_settings(crawl_source_deadline_s=-1)


# Faults at scale: a smaller run of benchmarks/bench_crawl_faults.py (200 pages there).


def test_a_crawl_with_faults_finishes_reports_every_bad_page_and_fetches_nothing_private() -> None:
    """40 recorded pages: 4 stall, 4 answer 5xx, 2 feeds whose body is a URL, 2 private addresses."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_crawl_faults.py"
    spec = importlib.util.spec_from_file_location("bench_crawl_faults", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    report = bench.run(pages=40, deadline_s=15.0)
    assert report.problems() == []
    assert {c: len(urls) for c, urls in report.targets.items()} == {
        "ok": 28,
        "stall": 4,
        "server_error": 4,
        "feed_url": 2,
        "private": 2,
    }
    assert len(report.failures) == 12 and report.canary_hits == report.feed_body_hits == 0


# git: the clone connects to the address the guard checked, with no user or system gitconfig.


@contextmanager
def git_http_server(root: Path) -> Iterator[tuple[int, list[str]]]:
    """Smart HTTP for the bare repositories under `root` (`git http-backend` as CGI)."""
    import os
    import subprocess

    hits: list[str] = []

    class GitHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.cgi()

        def do_POST(self) -> None:
            self.cgi()

        def cgi(self) -> None:
            hits.append(self.path)
            path, _, query = self.path.partition("?")
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            env = {
                "PATH": os.environ["PATH"],
                "GIT_PROJECT_ROOT": str(root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": "/dev/null",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                "HTTP_GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                "REMOTE_ADDR": "127.0.0.1",
            }
            out = subprocess.run(
                ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
            ).stdout
            head, _, payload = out.partition(b"\r\n\r\n")
            status, headers = 200, []
            for line in head.decode().split("\r\n"):
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), GitHandler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield httpd.server_address[1], hits
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def bare_repository(tmp_path: Path) -> Path:
    """`root/notes.git`, one commit with a README; returns root."""
    import os
    import subprocess

    work, root = tmp_path / "work", tmp_path / "served"
    work.mkdir()
    (work / "README.md").write_text("# Notes\n\nPinned clones connect where the guard looked.\n")
    env = {
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_AUTHOR_NAME": "Ada",
        "GIT_AUTHOR_EMAIL": "ada@example.org",
        "GIT_COMMITTER_NAME": "Ada",
        "GIT_COMMITTER_EMAIL": "ada@example.org",
        "PATH": os.environ["PATH"],
    }
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "notes"]):
        subprocess.run(["git", *args], cwd=work, env=env, check=True)
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(work), str(root / "notes.git")], env=env, check=True
    )
    return root


def test_a_git_clone_connects_to_the_checked_address(bare_repository: Path) -> None:
    """The remote's name never resolves (.invalid); the clone works only through the pin."""
    from twin_platform.collection.crawlers.github import RepoLimits, clone_and_read, pin_address
    from twin_platform.collection.crawlers.http import FetchError

    with git_http_server(bare_repository) as (port, hits):
        remote = f"http://pinned.invalid:{port}/notes.git"
        repository = clone_and_read(remote, AUTHOR, remote, RepoLimits(), address="127.0.0.1")
        assert "Pinned clones connect where the guard looked." in repository.content
        assert hits
        with pytest.raises(FetchError, match="git clone failed"):
            clone_and_read(remote, AUTHOR, remote, RepoLimits())  # unpinned: the name is resolved
    assert pin_address("https://github.com/ada/notes", "140.82.112.3") == [
        "-c",
        "http.curloptResolve=github.com:443:140.82.112.3",
    ]
    assert pin_address("https://git.example:8443/a/b", "2001:db8::1")[1].endswith(
        "git.example:8443:[2001:db8::1]"
    )


def test_a_users_gitconfig_cannot_redirect_a_clone(
    bare_repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An insteadOf rule in ~/.gitconfig would send the clone to another server (here one that
    exists); git runs without any user or system config, so the rule is never applied."""
    from twin_platform.collection.crawlers.github import RepoLimits, clone_and_read
    from twin_platform.collection.crawlers.http import FetchError

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    with git_http_server(bare_repository) as (port, hits):
        remote = f"http://elsewhere.invalid:{port}/notes.git"
        (home / ".gitconfig").write_text(
            f'[url "http://127.0.0.1:{port}/"]\n\tinsteadOf = http://elsewhere.invalid:{port}/\n'
        )
        with pytest.raises(FetchError, match="git clone failed"):
            clone_and_read(remote, AUTHOR, remote, RepoLimits())
    assert hits == []
