"""Medium: the RSS feed `medium.com/feed/@user` (full text), article pages when needed.

Medium answers crawlers with a bot check ("Just a moment...") more often than not; the feed does
not, so profiles always go through the feed and a blocked article falls back to it.
"""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import urlsplit

from twin_platform.collection.crawlers.base import host_matches
from twin_platform.collection.crawlers.feed import FeedSiteCrawler


class MediumCrawler(FeedSiteCrawler):
    name: ClassVar[str] = "medium"
    hosts: ClassVar[tuple[str, ...]] = ("medium.com",)

    def feed_url(self, url: str) -> str | None:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        segments = [s for s in parts.path.split("/") if s]
        if segments[:1] == ["feed"]:
            return url
        if segments and segments[0].startswith("@"):
            return f"{origin}/feed/{segments[0]}"
        if (
            host_matches(parts.hostname or "", self.hosts)
            and (parts.hostname or "") != "medium.com"
        ):
            return f"{origin}/feed"  # user.medium.com
        return None

    def is_post(self, url: str) -> bool:
        segments = [s for s in urlsplit(url).path.split("/") if s]
        if segments[:1] == ["feed"]:
            return False
        if segments and segments[0].startswith("@"):
            return len(segments) >= 2
        return len(segments) >= 1 and segments[0] != "feed"
