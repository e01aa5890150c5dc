"""Any web page as an article: main content extracted by trafilatura, navigation and footers dropped."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from twin_platform.collection.collected import Collected, Failure, parse_failure
from twin_platform.collection.crawlers.http import FetchError, Page, SafeClient, canonical_url
from twin_platform.collection.html import is_bot_check, main_content
from twin_platform.documents import Article

MIN_CONTENT_CHARS = 200


def article_from_page(page: Page, author: str, platform: str) -> Article:
    """Raise FetchError for what must never be stored: bot checks, non-HTML, pages without content.

    CPU-bound (seconds for a large page): crawlers run it in a thread. The extractor only gets the
    fetched text (trafilatura never downloads here; `htmldate` would for a bare URL string, but
    trafilatura hands it a parsed tree)."""
    if not page.is_html:
        raise FetchError(
            page.url, f"not an HTML page (content type {page.content_type or 'missing'})"
        )
    if is_bot_check(page.text):
        raise FetchError(
            page.url,
            "bot-check page (e.g. 'Just a moment...'): not stored; try the site's RSS feed or an export",
        )
    extracted = main_content(page.text, page.url)
    if len(extracted.content) < MIN_CONTENT_CHARS:
        raise FetchError(page.url, f"no main content found ({len(extracted.content)} characters)")
    metadata = {"decode_errors": page.decode_errors} if page.decode_errors else {}
    return Article(
        author=author,
        platform=platform,
        url=canonical_url(page.url),
        title=extracted.title,
        content=extracted.content,
        published_at=extracted.published_at,
        metadata=metadata,
    )


class ArticleCrawler:
    name: ClassVar[str] = "article"
    hosts: ClassVar[tuple[str, ...]] = ()

    async def crawl(self, url: str, author: str, client: SafeClient) -> Collected:
        try:
            page = await client.get(url)
            article = await asyncio.to_thread(article_from_page, page, author, "web")
            return Collected(documents=[article])
        except FetchError as exc:
            return Collected(failures=[Failure(url, exc.reason)])
        except Exception as exc:  # a page the extractor chokes on costs only itself
            return Collected(failures=[parse_failure(url, exc)])
