"""Medium export: `posts/*.html`, one h-entry per post; files named `draft_*` are drafts."""

from __future__ import annotations

from pathlib import Path

import lxml.html
from lxml import etree

from twin_platform.crawlers.base import Collected, Failure
from twin_platform.crawlers.extract import html_to_markdown, parse_date
from twin_platform.documents import Article
from twin_platform.importers.archive import read_text


def import_post(html_file: Path, author: str) -> Article | Failure:
    html, decode_errors = read_text(html_file)
    try:
        root = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError) as exc:
        return Failure(str(html_file), f"unreadable HTML ({exc})")
    body = root.find(".//section[@data-field='body']")
    if body is None:
        return Failure(str(html_file), "not a Medium post (no body section)")
    for title_graf in body.xpath(".//*[contains(@class, 'graf--title')]"):
        title_graf.drop_tree()  # Medium repeats the title as the body's first heading
    content = html_to_markdown(lxml.html.tostring(body, encoding="unicode"))
    if not content:
        return Failure(str(html_file), "empty post")
    title_el = root.find(".//h1[@class='p-name']")
    canonical = root.find(".//a[@class='p-canonical']")
    published = root.find(".//time[@class='dt-published']")
    url = (
        canonical.get("href")
        if canonical is not None and canonical.get("href")
        else html_file.resolve().as_uri()
    )
    return Article(
        author=author,
        platform="medium",
        url=url,
        title=title_el.text_content().strip() if title_el is not None else html_file.stem,
        content=content,
        published_at=parse_date(published.get("datetime") if published is not None else None),
        metadata={"decode_errors": decode_errors} if decode_errors else {},
    )


def import_medium(posts_dir: Path, author: str) -> Collected:
    result = Collected()
    for html_file in sorted(posts_dir.glob("*.html")):
        if html_file.name.startswith("draft_"):
            result.skipped.append(Failure(str(html_file), "draft"))
            continue
        outcome = import_post(html_file, author)
        if isinstance(outcome, Failure):
            result.failures.append(outcome)
        else:
            result.documents.append(outcome)
    return result
