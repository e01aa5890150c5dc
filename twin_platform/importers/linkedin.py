"""LinkedIn data export: `Shares.csv` (posts) and `Articles/Articles/*.html` (long-form articles)."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from pathlib import Path

import lxml.html
from lxml import etree

from twin_platform.crawlers.base import Collected, Failure
from twin_platform.crawlers.extract import html_to_markdown
from twin_platform.documents import Article, Post
from twin_platform.importers.archive import read_text

SHARE_COLUMNS = ("Date", "ShareLink", "ShareCommentary")


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(value.strip(), fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def import_shares(shares_csv: Path, author: str) -> Collected:
    result = Collected()
    text, _ = read_text(shares_csv)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in SHARE_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        result.failures.append(Failure(str(shares_csv), f"missing columns {missing}"))
        return result
    try:
        for row in reader:
            where = f"{shares_csv.name} line {reader.line_num}"
            if None in row or any(row.get(c) is None for c in SHARE_COLUMNS):
                result.failures.append(Failure(where, "malformed row (wrong number of fields)"))
                continue
            commentary = (row["ShareCommentary"] or "").strip().strip('"').strip()
            if not commentary:
                result.skipped.append(Failure(where, "reshare without text"))
                continue
            link = (row["ShareLink"] or "").strip()
            if not link.startswith("http"):
                result.failures.append(Failure(where, "no ShareLink URL"))
                continue
            shared = (row.get("SharedUrl") or "").strip()
            result.documents.append(
                Post(
                    author=author,
                    platform="linkedin",
                    url=link,
                    content=commentary.replace('""', '"'),
                    published_at=_date(row["Date"]),
                    metadata={"shared_url": shared} if shared else {},
                )
            )
    except csv.Error as exc:
        result.failures.append(
            Failure(
                f"{shares_csv.name} line {reader.line_num}",
                f"unreadable CSV ({exc}); rows after it skipped",
            )
        )
    return result


def import_article(html_file: Path, author: str) -> Article | Failure:
    html, _ = read_text(html_file)
    try:
        root = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError) as exc:
        return Failure(str(html_file), f"unreadable HTML ({exc})")
    heading = root.find(".//h1")
    title = heading.text_content().strip() if heading is not None else html_file.stem
    link = heading.find(".//a") if heading is not None else None
    url = (
        link.get("href")
        if link is not None and link.get("href", "").startswith("http")
        else html_file.resolve().as_uri()
    )
    published = None
    for p in root.xpath("//p[@class='published' or @class='created']"):
        match = re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", p.text_content())
        if match and (published is None or p.get("class") == "published"):
            published = _date(match.group(0))
        p.drop_tree()
    if heading is not None:
        heading.drop_tree()
    body = root.find("body")
    content = html_to_markdown(
        lxml.html.tostring(body if body is not None else root, encoding="unicode")
    )
    if not content:
        return Failure(str(html_file), "no article text in the HTML")
    return Article(
        author=author,
        platform="linkedin",
        url=url,
        title=title,
        content=content,
        published_at=published,
    )


def import_linkedin(root: Path, author: str) -> Collected:
    from twin_platform.importers.archive import find

    result = Collected()
    shares = find(root, "Shares.csv")
    if shares is not None:
        result.extend(import_shares(shares, author))
    articles_dir = find(root, "Articles")
    for html_file in sorted(articles_dir.rglob("*.html")) if articles_dir is not None else []:
        outcome = import_article(html_file, author)
        if isinstance(outcome, Failure):
            result.failures.append(outcome)
        else:
            result.documents.append(outcome)
    return result
