"""LinkedIn data export: `Shares.csv` (posts) and `Articles/Articles/*.html` (long-form articles)."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from pathlib import Path

from bs4 import BeautifulSoup

from twin_platform.collection.collected import Collected, Failure, Skipped
from twin_platform.collection.html import html_to_markdown
from twin_platform.collection.importers.archive import find, read_text
from twin_platform.collection.importers.base import Importer
from twin_platform.documents import Article, Post

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
            result.add(where, import_share, row, where, author)
    except csv.Error as exc:
        result.failures.append(
            Failure(
                f"{shares_csv.name} line {reader.line_num}",
                f"unreadable CSV ({exc}); rows after it skipped",
            )
        )
    return result


def import_share(row: dict[str, str], where: str, author: str) -> Post | Failure:
    """One row of Shares.csv: the post's text, link and date."""
    if None in row or any(row.get(c) is None for c in SHARE_COLUMNS):
        return Failure(where, "malformed row (wrong number of fields)")
    commentary = (row["ShareCommentary"] or "").strip()
    if len(commentary) > 1 and commentary[0] == commentary[-1] == '"':  # LinkedIn's extra quotes
        commentary = commentary[1:-1].strip()
    if not commentary:
        return Skipped(where, "reshare without text")
    link = (row["ShareLink"] or "").strip()
    if not link.startswith("http"):
        return Failure(where, "no ShareLink URL")
    shared = (row.get("SharedUrl") or "").strip()
    return Post(
        author=author,
        platform="linkedin",
        url=link,
        content=commentary.replace('""', '"'),
        published_at=_date(row["Date"]),
        metadata={"shared_url": shared} if shared else {},
    )


def import_article(html_file: Path, author: str) -> Article | Failure:
    html, _ = read_text(html_file)
    root = BeautifulSoup(html, "lxml")  # lxml's own tree would cut nesting past 256 levels
    heading = root.find("h1")
    title = heading.get_text().strip() if heading is not None else html_file.stem
    link = heading.find("a") if heading is not None else None
    href = str(link.get("href") or "") if link is not None else ""
    url = href if href.startswith("http") else html_file.resolve().as_uri()
    published = None
    for p in root.find_all("p", class_=["published", "created"]):
        match = re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", p.get_text())
        if match and (published is None or "published" in p["class"]):
            published = _date(match.group(0))
        p.decompose()
    if heading is not None:
        heading.decompose()
    content = html_to_markdown(str(root.body or root))
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
    from twin_platform.collection.importers.archive import find

    result = Collected()
    shares = find(root, "Shares.csv")
    if shares is not None:
        result.extend(import_shares(shares, author))
    articles_dir = find(root, "Articles")
    for html_file in sorted(articles_dir.rglob("*.html")) if articles_dir is not None else []:
        result.add(str(html_file), import_article, html_file, author)
    return result


def detect(root: Path) -> Path | None:
    if find(root, "Shares.csv") or find(root, "Articles/Articles", max_depth=3):
        return root
    return None


IMPORTER = Importer("linkedin", detect, lambda root, author, options: import_linkedin(root, author))
