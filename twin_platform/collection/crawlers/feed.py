"""Sites that publish a full-text RSS feed (Medium, Substack): the feed first, post pages as needed.

The feed is what still works when article pages answer with a bot check, so a single post URL that
is blocked falls back to the author's feed and takes the matching entry from it.
"""

from __future__ import annotations

import asyncio
import io
from calendar import timegm
from datetime import UTC, datetime
from typing import Any, ClassVar

from twin_platform.collection.collected import Collected, Failure, parse_failure
from twin_platform.collection.crawlers.article import MIN_CONTENT_CHARS, article_from_page
from twin_platform.collection.crawlers.http import FetchError, Page, SafeClient, canonical_url
from twin_platform.collection.html import html_to_markdown
from twin_platform.documents import Article

FEED_ACCEPT = "application/rss+xml,application/atom+xml,application/xml;q=0.9,*/*;q=0.5"


def parse_feed(page: Page) -> Any:
    """feedparser on the response's bytes, never on a string: given a string, feedparser fetches
    it when it looks like a URL (urllib, outside the SSRF guard) and opens it when it names a
    file. The content type gives it the declared charset."""
    import feedparser

    content_type = page.content_type + (f"; charset={page.charset}" if page.charset else "")
    return feedparser.parse(io.BytesIO(page.body), response_headers={"content-type": content_type})


async def read_feed(feed_url: str, client: SafeClient) -> list[Any]:
    page = await client.get(feed_url, accept=FEED_ACCEPT)
    parsed = await asyncio.to_thread(parse_feed, page)  # a large feed must not stall other crawls
    if not parsed.entries and (parsed.bozo or "<rss" not in page.text[:2000].lower()):
        raise FetchError(
            feed_url,
            f"not a readable RSS/Atom feed (content type {page.content_type or 'missing'})",
        )
    return list(parsed.entries)


def _published(entry: Any) -> datetime | None:
    stamp = entry.get("published_parsed") or entry.get("updated_parsed")
    return datetime.fromtimestamp(timegm(stamp), tz=UTC) if stamp else None


def article_from_entry(entry: Any, author: str, platform: str) -> Article | None:
    """The entry as an article, or None when the feed only carries a summary."""
    bodies = [c.get("value", "") for c in entry.get("content", [])] or [entry.get("summary", "")]
    content = html_to_markdown(max(bodies, key=len))
    if len(content) < MIN_CONTENT_CHARS or not entry.get("link"):
        return None
    return Article(
        author=author,
        platform=platform,
        url=canonical_url(entry["link"]),
        title=entry.get("title"),
        content=content,
        published_at=_published(entry),
        metadata={
            "via": "feed",
            "tags": [t.get("term") for t in entry.get("tags", []) if t.get("term")],
        },
    )


class FeedSiteCrawler:
    """Subclasses say where the feed is and which URLs are single posts."""

    name: ClassVar[str]
    hosts: ClassVar[tuple[str, ...]]

    def __init__(self, max_items: int = 100) -> None:
        self.max_items = max_items

    def feed_url(self, url: str) -> str | None:
        raise NotImplementedError

    def is_post(self, url: str) -> bool:
        raise NotImplementedError

    async def crawl(self, url: str, author: str, client: SafeClient) -> Collected:
        if self.is_post(url):
            return await self._crawl_post(url, author, client)
        feed_url = self.feed_url(url)
        if feed_url is None:
            return Collected(
                failures=[Failure(url, f"not a {self.name} profile, feed or post URL")]
            )
        return await self._crawl_feed(feed_url, author, client)

    async def _crawl_feed(self, feed_url: str, author: str, client: SafeClient) -> Collected:
        result = Collected()
        try:
            entries = await read_feed(feed_url, client)
        except FetchError as exc:
            result.failures.append(Failure(feed_url, exc.reason))
            return result
        for entry in entries[: self.max_items]:
            article = self._entry_article(entry, author, feed_url)
            if isinstance(article, Failure):
                result.failures.append(article)
            elif article is not None:
                result.documents.append(article)
            elif entry.get("link"):  # summary-only feed: read the post page
                result.extend(await self._crawl_post(entry["link"], author, client, fallback=False))
        return result

    def _entry_article(self, entry: Any, author: str, feed_url: str) -> Article | Failure | None:
        """`article_from_entry`, where an entry the parser chokes on costs only that entry."""
        try:
            return article_from_entry(entry, author, self.name)
        except Exception as exc:
            return parse_failure(str(entry.get("link") or feed_url), exc)

    async def _crawl_post(
        self, url: str, author: str, client: SafeClient, fallback: bool = True
    ) -> Collected:
        try:
            page = await client.get(url)
            article = await asyncio.to_thread(article_from_page, page, author, self.name)
            return Collected(documents=[article])
        except FetchError as exc:
            feed_url = self.feed_url(url) if fallback else None
            if feed_url is None:
                return Collected(failures=[Failure(url, exc.reason)])
            from_feed = await self._from_feed(url, feed_url, author, client)
            if isinstance(from_feed, Failure):
                return Collected(failures=[from_feed])
            if from_feed is not None:
                return Collected(documents=[from_feed])
            return Collected(
                failures=[Failure(url, f"{exc.reason}; not found in the feed {feed_url} either")]
            )
        except Exception as exc:  # a page the extractor chokes on costs only itself
            return Collected(failures=[parse_failure(url, exc)])

    async def _from_feed(
        self, url: str, feed_url: str, author: str, client: SafeClient
    ) -> Article | Failure | None:
        try:
            entries = await read_feed(feed_url, client)
        except FetchError:
            return None
        wanted = canonical_url(url).rstrip("/")
        for entry in entries:
            if canonical_url(entry.get("link", "")).rstrip("/") == wanted:
                article = self._entry_article(entry, author, feed_url)
                if isinstance(article, Article):
                    article.metadata["fallback"] = "page unavailable, taken from the feed"
                return article
        return None
