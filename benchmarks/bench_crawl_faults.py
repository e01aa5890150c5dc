"""Crawl fault injection: a crawl of recorded pages from a local site where some pages misbehave.

Of `--pages` targets (default 200): 10% stall (half never send headers, half trickle their body
slower than the request deadline allows), 10% answer 5xx every time, 5% are feeds whose body is a
URL (feedparser would fetch it if handed a string), 5% point at private addresses (a canary server
on 127.0.0.2, the IPv4-mapped and NAT64 forms of private addresses, the cloud metadata address);
the rest are recorded article pages (tests/fixtures/pages), each made unique. Only 127.0.0.1 is
allowed (TWIN_CRAWL_ALLOW_NETWORKS), so the canary must never be reached.

Checks (exit status 1 if any fails): the crawl finishes within `--deadline-s`; every good page is
a document; every bad page is reported exactly once, with the reason its fault calls for; the
canary and the URLs inside feed bodies got no request.

    .venv/bin/python benchmarks/bench_crawl_faults.py --pages 200 --output /tmp/crawl_faults.md

tests/test_security_crawl.py runs a smaller crawl through `run`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twin_platform.collection.crawlers.dispatcher import CrawlTarget, crawl_async  # noqa: E402
from twin_platform.settings import Settings, load_settings  # noqa: E402

PAGES = ROOT / "tests" / "fixtures" / "pages"
RECORDED = ["generic_article.html", "medium_article.html", "substack_post.html"]
HTML = "text/html; charset=utf-8"
RSS = "application/rss+xml; charset=utf-8"
# category -> share of the targets; the rest are good pages
SHARES = {"stall": 0.10, "server_error": 0.10, "feed_url": 0.05, "private": 0.05}
# what a failure's reason must say, per category
EXPECTED_REASON = {
    "stall": ("request deadline", "ReadTimeout", "source deadline"),
    "server_error": ("HTTP 50",),
    "feed_url": ("not a readable RSS/Atom feed",),
    "private": ("non-public address",),
}


@dataclass
class Hits:
    paths: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str) -> None:
        with self.lock:
            self.paths[path] += 1

    def under(self, prefix: str) -> int:
        with self.lock:
            return sum(n for path, n in self.paths.items() if path.startswith(prefix))


def recorded_page(number: int, base: str) -> bytes:
    """A recorded page, made unique by a sentence naming its number."""
    name = RECORDED[number % len(RECORDED)]
    text = (PAGES / name).read_text(encoding="utf-8").replace("{{BASE}}", base)
    unique = f"<p>Field note {number}: every page of this crawl says something of its own.</p>"
    return text.replace("</h1>", f"</h1>{unique}", 1).encode()


def _handler(
    hits: Hits, stop: threading.Event, urls: dict[str, str]
) -> type[BaseHTTPRequestHandler]:
    """The site's pages by path: /ok/N, /silent/N, /trickle/N, /error/N, /feeds/N/feed."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            hits.add(self.path)
            kind, number = [*self.path.strip("/").split("/"), "", ""][:2]
            try:
                if kind == "ok":
                    self.send(200, HTML, recorded_page(int(number), urls["site"]))
                elif kind == "silent":  # accepts, then never answers
                    stop.wait(120)
                elif kind == "trickle":  # headers at once, then a byte now and then
                    body = recorded_page(int(number), urls["site"])
                    self.send_response(200)
                    self.send_header("Content-Type", HTML)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    for start in range(0, len(body), 64):
                        if stop.wait(0.5):
                            return
                        self.wfile.write(body[start : start + 64])
                        self.wfile.flush()
                elif kind == "error":
                    self.send(503 if int(number) % 2 else 500, HTML, b"<h1>unavailable</h1>")
                elif kind == "feeds":  # a feed whose body is a URL the parser must not follow
                    target = urls["canary"] if int(number) % 2 == 0 else urls["site"]
                    self.send(200, RSS, f"{target}/latest/meta-data/{number}".encode())
                else:
                    self.send(404, HTML, b"<h1>not found</h1>")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the crawler gave up on this page, as it should

    return Handler


@contextmanager
def serve(
    host: str, name: str, hits: Hits, stop: threading.Event, urls: dict[str, str]
) -> Iterator[str]:
    """A server on `host`, its base URL recorded in `urls[name]` (handlers read the others')."""
    server = ThreadingHTTPServer((host, 0), _handler(hits, stop, urls))
    server.daemon_threads = True
    urls[name] = f"http://{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield urls[name]
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def plan(pages: int, site: str, canary: str) -> dict[str, list[CrawlTarget]]:
    """The targets by category, `SHARES` of `pages` each (at least one), the rest good pages."""
    counts = {name: max(1, round(pages * share)) for name, share in SHARES.items()}
    counts["ok"] = pages - sum(counts.values())
    port = canary.rsplit(":", 1)[1]
    private_hosts = [
        canary,  # 127.0.0.2: loopback, but not the allowed 127.0.0.1
        f"http://[::ffff:127.0.0.2]:{port}",  # the same, IPv4-mapped
        "http://169.254.169.254",  # cloud metadata
        "http://[64:ff9b::a00:1]",  # NAT64 of 10.0.0.1
        "http://10.255.255.1",
    ]
    return {
        "ok": [CrawlTarget(f"{site}/ok/{i}", "article") for i in range(counts["ok"])],
        "stall": [
            CrawlTarget(f"{site}/{'silent' if i % 2 else 'trickle'}/{i}", "article")
            for i in range(counts["stall"])
        ],
        "server_error": [
            CrawlTarget(f"{site}/error/{i}", "article") for i in range(counts["server_error"])
        ],
        "feed_url": [
            CrawlTarget(f"{site}/feeds/{i}/feed", "substack") for i in range(counts["feed_url"])
        ],
        "private": [
            CrawlTarget(f"{private_hosts[i % len(private_hosts)]}/page/{i}", "article")
            for i in range(counts["private"])
        ],
    }


def crawl_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "crawl_allow_networks": ["127.0.0.1/32"],
        "crawl_timeout_s": 1.0,
        "crawl_request_deadline_s": 2.0,
        "crawl_source_deadline_s": 5.0,
        "crawl_retries": 1,
        "crawl_backoff_s": 0.05,
        "crawl_concurrency": 16,
        "crawl_per_domain_concurrency": 16,
        "crawl_per_domain_rps": 1000.0,
    }
    return load_settings(**(values | overrides))


@dataclass
class FaultReport:
    targets: dict[str, list[str]]
    documents: list[str]
    failures: list[tuple[str, str]]  # (location, reason)
    elapsed_s: float
    deadline_s: float
    canary_hits: int
    feed_body_hits: int

    def problems(self) -> list[str]:
        """What went wrong; empty when the crawl did everything it must."""
        found = []
        if self.elapsed_s > self.deadline_s:
            found.append(f"took {self.elapsed_s:.1f} s, over the {self.deadline_s:g} s deadline")
        if self.canary_hits or self.feed_body_hits:
            found.append(f"private addresses fetched: {self.canary_hits + self.feed_body_hits}")
        if sorted(self.documents) != sorted(self.targets["ok"]):
            found.append(f"documents {len(self.documents)} of {len(self.targets['ok'])} pages")
        reported = Counter(location for location, _ in self.failures)
        reasons = dict(self.failures)
        for category, expected in EXPECTED_REASON.items():
            for url in self.targets[category]:
                if reported[url] != 1:
                    found.append(f"{category} {url}: reported {reported[url]} times")
                elif not any(text in reasons[url] for text in expected):
                    found.append(f"{category} {url}: unexpected reason {reasons[url]!r}")
        bad = {url for c in EXPECTED_REASON for url in self.targets[c]}
        found += [f"a failure for a good page: {loc}" for loc in reported if loc not in bad]
        return found

    def markdown(self, pages: int) -> str:
        reasons = dict(self.failures)
        rows = [
            "| category | targets | documents | reported | example reason |",
            "|---|---|---|---|---|",
        ]
        for category, urls in self.targets.items():
            example = reasons.get(urls[0], "") if urls else ""
            documents = sum(url in self.documents for url in urls)
            reported = sum(url in reasons for url in urls)
            rows.append(f"| {category} | {len(urls)} | {documents} | {reported} | {example[:90]} |")
        verdict = "; ".join(self.problems()) or "all checks passed"
        return "\n".join(
            [
                "# Crawl under faults",
                "",
                f"Command: `.venv/bin/python benchmarks/bench_crawl_faults.py --pages {pages}`",
                "",
                *rows,
                "",
                f"Finished in {self.elapsed_s:.1f} s (deadline {self.deadline_s:g} s); requests"
                f" to the private canary: {self.canary_hits}; to URLs inside feed bodies:"
                f" {self.feed_body_hits}. Result: {verdict}.",
            ]
        )


def run(pages: int = 200, deadline_s: float = 30.0, **overrides: object) -> FaultReport:
    """Serve the site and the canary, crawl every target once, and report."""
    settings = crawl_settings(**overrides)
    hits, canary_hits = Hits(), Hits()
    stop = threading.Event()
    urls: dict[str, str] = {}
    with (
        serve("127.0.0.1", "site", hits, stop, urls) as site,
        serve("127.0.0.2", "canary", canary_hits, threading.Event(), urls) as canary,
    ):
        targets = plan(pages, site, canary)
        every = [t for group in targets.values() for t in group]
        started = time.monotonic()
        result = asyncio.run(_bounded(every, settings, deadline_s + 10))
        elapsed = time.monotonic() - started
        stop.set()  # stalled handlers give up
    return FaultReport(
        targets={c: [t.url for t in group] for c, group in targets.items()},
        documents=[d.url for d in result.documents],
        failures=[(f.location, f.reason) for f in result.failures],
        elapsed_s=elapsed,
        deadline_s=deadline_s,
        canary_hits=canary_hits.under("/"),
        feed_body_hits=hits.under("/latest/"),
    )


async def _bounded(targets: list[CrawlTarget], settings: Settings, limit_s: float):  # type: ignore[no-untyped-def]
    """The crawl, cut off well past its deadline so that a hang fails instead of waiting."""
    async with asyncio.timeout(limit_s):
        return await crawl_async(targets, "fault-bench", settings)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument(
        "--deadline-s", type=float, default=30.0, help="the whole crawl must finish within this"
    )
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    args = parser.parse_args()
    report = run(args.pages, args.deadline_s)
    text = report.markdown(args.pages)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    sys.exit(1 if report.problems() else 0)


if __name__ == "__main__":
    main()
