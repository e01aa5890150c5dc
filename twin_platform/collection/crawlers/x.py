"""X (Twitter): single posts through the public oEmbed endpoint; timelines need the archive.

Profiles and timelines are behind a login; the account's archive (tweets.js) has every post and is
imported by `twin_platform.collection.importers.x`.
"""

from __future__ import annotations

import json
import re
from typing import ClassVar
from urllib.parse import urlencode, urlsplit

from twin_platform.collection.collected import Collected, Failure, parse_failure
from twin_platform.collection.crawlers.http import FetchError, SafeClient
from twin_platform.collection.html import html_to_markdown
from twin_platform.documents import Post

OEMBED_ENDPOINT = "https://publish.twitter.com/oembed"
ARCHIVE_HINT = (
    "X timelines need login; download your archive (Settings > Your account > Download an archive "
    "of your data) and run `twin ingest --author NAME <archive.zip>`"
)
STATUS_PATH = re.compile(r"^/(?P<user>[A-Za-z0-9_]{1,15})/status(?:es)?/(?P<id>\d+)")


class XCrawler:
    name: ClassVar[str] = "x"
    hosts: ClassVar[tuple[str, ...]] = ("x.com", "twitter.com")

    def __init__(self, oembed_endpoint: str = OEMBED_ENDPOINT) -> None:
        self.oembed_endpoint = oembed_endpoint

    async def crawl(self, url: str, author: str, client: SafeClient) -> Collected:
        match = STATUS_PATH.match(urlsplit(url).path)
        if match is None:
            return Collected(failures=[Failure(url, ARCHIVE_HINT)])
        canonical = f"https://x.com/{match['user']}/status/{match['id']}"
        query = urlencode({"url": canonical, "omit_script": "true", "dnt": "true"})
        try:
            page = await client.get(f"{self.oembed_endpoint}?{query}", accept="application/json")
            payload = json.loads(page.text)
        except FetchError as exc:
            return Collected(failures=[Failure(url, f"{exc.reason}. {ARCHIVE_HINT}")])
        except json.JSONDecodeError:
            return Collected(failures=[Failure(url, "oEmbed answer is not JSON")])
        try:
            html = payload.get("html", "")
            paragraph = re.search(r"<p[^>]*>(.*?)</p>", html, flags=re.S)
            text = html_to_markdown(paragraph.group(1) if paragraph else html)
        except Exception as exc:  # an answer the parser chokes on costs only this post
            return Collected(failures=[parse_failure(url, exc)])
        if not text:
            return Collected(failures=[Failure(url, "the post has no text")])
        return Collected(
            documents=[
                Post(
                    author=author,
                    platform="x",
                    url=canonical,
                    content=text,
                    metadata={"x_user": match["user"], "x_id": match["id"], "via": "oembed"},
                )
            ]
        )
