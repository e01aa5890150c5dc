"""Substack: the publication's RSS feed `/feed` (full text of free posts), `/p/slug` post pages."""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import urlsplit

from twin_platform.collection.crawlers.feed import FeedSiteCrawler


class SubstackCrawler(FeedSiteCrawler):
    """Custom domains work too: name the source's kind `substack` in the sources file."""

    name: ClassVar[str] = "substack"
    hosts: ClassVar[tuple[str, ...]] = ("substack.com",)

    def feed_url(self, url: str) -> str | None:
        parts = urlsplit(url)
        if parts.path.rstrip("/").endswith("/feed"):
            return url
        return f"{parts.scheme}://{parts.netloc}/feed"

    def is_post(self, url: str) -> bool:
        return urlsplit(url).path.startswith("/p/")
