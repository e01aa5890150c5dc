"""Medium export: `posts/*.html`, one h-entry per post; files named `draft_*` are drafts."""

from __future__ import annotations

from pathlib import Path

from bs4 import BeautifulSoup

from twin_platform.collection.collected import Collected, Failure
from twin_platform.collection.html import html_to_markdown, parse_date
from twin_platform.collection.importers.archive import find, read_text
from twin_platform.collection.importers.base import Importer
from twin_platform.documents import Article


def import_post(html_file: Path, author: str) -> Article | Failure:
    html, decode_errors = read_text(html_file)
    root = BeautifulSoup(html, "lxml")  # lxml's own tree would cut nesting past 256 levels
    body = root.find("section", attrs={"data-field": "body"})
    if body is None:
        return Failure(str(html_file), "not a Medium post (no body section)")
    for chrome in body.select(".graf--title, hr.section-divider"):
        chrome.decompose()  # the title repeated as the first heading; the rule above it
    content = html_to_markdown(str(body))
    if not content:
        return Failure(str(html_file), "empty post")
    title_el = root.find("h1", class_="p-name")
    canonical = root.find("a", class_="p-canonical")
    published = root.find("time", class_="dt-published")
    url = (
        str(canonical["href"])
        if canonical is not None and canonical.get("href")
        else html_file.resolve().as_uri()
    )
    return Article(
        author=author,
        platform="medium",
        url=url,
        title=title_el.get_text().strip() if title_el is not None else html_file.stem,
        content=content,
        published_at=parse_date(
            str(published.get("datetime") or "") if published is not None else None
        ),
        metadata={"decode_errors": decode_errors} if decode_errors else {},
    )


def import_medium(posts_dir: Path, author: str) -> Collected:
    result = Collected()
    for html_file in sorted(posts_dir.glob("*.html")):
        if html_file.name.startswith("draft_"):
            result.skipped.append(Failure(str(html_file), "draft"))
            continue
        result.add(str(html_file), import_post, html_file, author)
    return result


def detect(root: Path) -> Path | None:
    """The `posts/` folder of an export whose pages carry Medium's `h-entry` markup."""
    posts_dir = find(root, "posts", max_depth=2)
    if posts_dir is None or not posts_dir.is_dir():
        return None
    pages = list(posts_dir.glob("*.html"))[:5]
    return (
        posts_dir
        if any('class="h-entry"' in p.read_text(errors="replace")[:5000] for p in pages)
        else None
    )


IMPORTER = Importer(
    "medium", detect, lambda posts_dir, author, options: import_medium(posts_dir, author)
)
