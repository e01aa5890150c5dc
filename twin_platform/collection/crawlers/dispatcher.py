"""Choose a crawler by URL (or by the source's explicit kind) and crawl many URLs concurrently."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from twin_platform.addresses import parse_allow_network
from twin_platform.collection.collected import Collected, Failure
from twin_platform.collection.crawlers.article import ArticleCrawler
from twin_platform.collection.crawlers.base import Crawler, host_matches
from twin_platform.collection.crawlers.github import GitHubCrawler, RepoLimits
from twin_platform.collection.crawlers.http import HttpPolicy, SafeClient
from twin_platform.collection.crawlers.linkedin import LinkedInCrawler
from twin_platform.collection.crawlers.medium import MediumCrawler
from twin_platform.collection.crawlers.substack import SubstackCrawler
from twin_platform.collection.crawlers.x import XCrawler
from twin_platform.settings import Settings

log = logging.getLogger(__name__)

# Chosen by the URL's host in this order; the generic article crawler claims no host.
CRAWLER_TYPES = (MediumCrawler, SubstackCrawler, GitHubCrawler, LinkedInCrawler, XCrawler)
GIT = "git"  # any git remote, cloned by the GitHub crawler
CRAWLER_KINDS = (*(c.name for c in CRAWLER_TYPES), GIT, ArticleCrawler.name)


@dataclass(frozen=True)
class CrawlTarget:
    url: str
    kind: str | None = None  # one of CRAWLER_KINDS; None = choose by the URL's domain
    allow_networks: tuple[str, ...] = ()  # CIDRs this source may reach besides public addresses

    def __post_init__(self) -> None:
        networks = tuple(parse_allow_network(n) for n in self.allow_networks)
        object.__setattr__(self, "allow_networks", networks)


def build_crawlers(settings: Settings) -> dict[str, Crawler]:
    limits = RepoLimits(settings.repo_max_file_bytes, settings.repo_max_total_bytes)
    github = GitHubCrawler(limits)
    crawlers: list[Crawler] = [
        MediumCrawler(settings.crawl_max_feed_items),
        SubstackCrawler(settings.crawl_max_feed_items),
        github,
        LinkedInCrawler(),
        XCrawler(),
        ArticleCrawler(),
    ]
    return {crawler.name: crawler for crawler in crawlers} | {GIT: github}


def choose_kind(url: str) -> str:
    """The crawler kind for a URL: the first whose domains match, else a generic article."""
    host = urlsplit(url).hostname or ""
    for crawler_type in CRAWLER_TYPES:
        if host_matches(host, crawler_type.hosts):
            return crawler_type.name
    return ArticleCrawler.name


async def crawl_async(
    targets: Sequence[CrawlTarget],
    author: str,
    settings: Settings,
    crawlers: dict[str, Crawler] | None = None,
    on_done: Callable[[CrawlTarget, Collected], None] | None = None,
) -> Collected:
    """Crawl every target at once; the client bounds concurrency globally and per domain, and
    each target gets its own view of it (its networks, its deadline)."""
    crawlers = crawlers or build_crawlers(settings)
    result = Collected()
    async with SafeClient(HttpPolicy.from_settings(settings)) as client:

        async def one(target: CrawlTarget) -> Collected:
            kind = target.kind or choose_kind(target.url)
            crawler = crawlers.get(kind)
            if crawler is None:
                return Collected(
                    failures=[
                        Failure(
                            target.url, f"unknown crawler kind {kind!r}; one of {CRAWLER_KINDS}"
                        )
                    ]
                )
            try:
                source_client = client.for_source(target.allow_networks)
                collected = await crawler.crawl(target.url, author, source_client)
            except Exception as exc:  # a crawler bug must cost one URL, not the run
                log.exception("crawler %s crashed on %s", kind, target.url)
                collected = Collected(
                    failures=[Failure(target.url, f"{type(exc).__name__}: {exc}")]
                )
            for failure in collected.failures:
                log.warning("could not collect %s: %s", failure.location, failure.reason)
            if on_done is not None:
                on_done(target, collected)
            return collected

        for collected in await asyncio.gather(*(one(t) for t in targets)):
            result.extend(collected)
    return result


def crawl(
    targets: Sequence[CrawlTarget],
    author: str,
    settings: Settings,
    on_done: Callable[[CrawlTarget, Collected], None] | None = None,
) -> Collected:
    """Synchronous entry point for the ingest pipeline, notebooks and the CLI."""
    return asyncio.run(crawl_async(targets, author, settings, on_done=on_done))
