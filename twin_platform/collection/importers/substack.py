"""Substack export: `posts.csv` (one row per post) and `posts/<post_id>.html` (each post's body)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from twin_platform.collection.collected import Collected, Failure
from twin_platform.collection.html import html_to_markdown, parse_date
from twin_platform.collection.importers.archive import find, read_text
from twin_platform.collection.importers.base import Importer
from twin_platform.documents import Article

REQUIRED = ("post_id", "is_published", "title")


def import_substack(posts_csv: Path, author: str, base_url: str | None = None) -> Collected:
    """Published posts as articles; drafts are skipped. `base_url` gives posts their real URLs."""
    result = Collected()
    text, _ = read_text(posts_csv)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        result.failures.append(Failure(str(posts_csv), f"missing columns {missing}"))
        return result
    posts_dir = posts_csv.parent / "posts"
    try:
        for row in reader:
            where = f"{posts_csv.name} line {reader.line_num}"
            post_id = (row.get("post_id") or "").strip()
            if not post_id or None in row or "/" in post_id or post_id.startswith("."):
                result.failures.append(
                    Failure(where, "malformed row (bad post_id or wrong number of fields)")
                )
                continue
            if (row.get("is_published") or "").strip().lower() != "true":
                result.skipped.append(Failure(where, f"draft {post_id} (not published)"))
                continue
            html_file = posts_dir / f"{post_id}.html"
            if not html_file.is_file():
                result.failures.append(
                    Failure(where, f"posts/{post_id}.html is missing from the export")
                )
                continue
            result.add(str(html_file), import_post, html_file, row, author, base_url)
    except csv.Error as exc:
        result.failures.append(
            Failure(
                f"{posts_csv.name} line {reader.line_num}",
                f"unreadable CSV ({exc}); rows after it skipped",
            )
        )
    return result


def import_post(
    html_file: Path, row: dict[str, str], author: str, base_url: str | None
) -> Article | Failure:
    """One post: its body from `posts/<post_id>.html`, the rest from its posts.csv row."""
    html, decode_errors = read_text(html_file)
    content = html_to_markdown(html)
    if not content:
        return Failure(str(html_file), "no text in the post's HTML")
    post_id = row["post_id"].strip()
    slug = post_id.split(".", 1)[-1]
    url = f"{base_url.rstrip('/')}/p/{slug}" if base_url else html_file.resolve().as_uri()
    metadata = {
        "subtitle": row.get("subtitle") or None,
        "audience": row.get("audience"),
        "post_id": post_id,
    }
    if decode_errors:
        metadata["decode_errors"] = decode_errors
    return Article(
        author=author,
        platform="substack",
        url=url,
        title=row.get("title") or None,
        content=content,
        published_at=parse_date(row.get("post_date")),
        metadata=metadata,
    )


def detect(root: Path) -> Path | None:
    """`posts.csv` beside the `posts/` folder of HTML bodies."""
    posts_csv = find(root, "posts.csv")
    return posts_csv if posts_csv is not None and (posts_csv.parent / "posts").is_dir() else None


IMPORTER = Importer(
    "substack",
    detect,
    lambda posts_csv, author, options: import_substack(posts_csv, author, options.base_url),
)
