"""LinkedIn: public post and article pages where reachable; otherwise a pointer to the export.

LinkedIn shows most pages only after login (the "authwall"). Crawling behind a login breaks its
terms and the reference's crawler for good reason; the official data export has every post.
"""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import urlsplit

from twin_platform.collection.collected import Collected, Failure, parse_failure
from twin_platform.collection.crawlers.http import FetchError, SafeClient, canonical_url
from twin_platform.collection.html import is_bot_check, main_content
from twin_platform.documents import Article, Post

EXPORT_HINT = (
    "LinkedIn requires login for this page; download your data instead (Settings & Privacy > "
    "Data privacy > Get a copy of your data) and run `twin ingest --author NAME <export.zip>`"
)
LOGIN_MARKERS = ("authwall", "/login", "/signup", "/checkpoint/")


class LinkedInCrawler:
    name: ClassVar[str] = "linkedin"
    hosts: ClassVar[tuple[str, ...]] = ("linkedin.com",)

    async def crawl(self, url: str, author: str, client: SafeClient) -> Collected:
        path = urlsplit(url).path
        if not path.startswith(("/posts/", "/pulse/", "/feed/update/")):
            return Collected(
                failures=[Failure(url, f"not a public post or article URL. {EXPORT_HINT}")]
            )
        try:
            page = await client.get(url)
        except FetchError as exc:
            hint = f" {EXPORT_HINT}" if exc.status in (401, 403, 999) else ""
            return Collected(failures=[Failure(url, exc.reason + hint)])
        if any(m in urlsplit(page.url).path for m in LOGIN_MARKERS) or is_bot_check(page.text):
            return Collected(failures=[Failure(url, EXPORT_HINT)])
        try:
            extracted = main_content(page.text, page.url)
        except Exception as exc:  # a page the extractor chokes on costs only itself
            return Collected(failures=[parse_failure(url, exc)])
        if not extracted.content:
            return Collected(failures=[Failure(url, f"no post text on the page. {EXPORT_HINT}")])
        kind = Article if path.startswith("/pulse/") else Post
        return Collected(
            documents=[
                kind(
                    author=author,
                    platform="linkedin",
                    url=canonical_url(url),
                    title=extracted.title,
                    content=extracted.content,
                    published_at=extracted.published_at,
                )
            ]
        )
