"""A plain folder of Markdown, HTML or text files: one document per file.

Optional YAML front matter sets `title`, `date`, `url` and `category` (articles or posts). Without
it, the title is the first heading or the file name, and files under 300 words count as posts.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml

from twin_platform.collection.collected import Collected, Failure
from twin_platform.collection.html import html_to_markdown
from twin_platform.collection.importers.archive import read_text
from twin_platform.collection.importers.base import Importer
from twin_platform.documents import Article, Post

SUFFIXES = frozenset({".md", ".markdown", ".txt", ".html", ".htm"})
POST_MAX_WORDS = 300
FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)


def _front_matter(text: str) -> tuple[dict[str, Any], str]:
    match = FRONT_MATTER.match(text)
    if not match:
        return {}, text
    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError:
        return {}, text
    return (meta if isinstance(meta, dict) else {}), text[match.end() :]


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return None


def import_file(path: Path, author: str) -> Article | Post | Failure:
    if b"\x00" in path.read_bytes()[:8192]:
        return Failure(str(path), "binary file")
    text, decode_errors = read_text(path)
    meta, body = _front_matter(text)
    if path.suffix.lower() in (".html", ".htm"):
        title_match = re.search(r"<title[^>]*>(.*?)</title>", body, re.S | re.I)
        meta.setdefault("title", title_match.group(1).strip() if title_match else None)
        body = html_to_markdown(body)
    content = body.strip()
    if not content:
        return Failure(str(path), "empty file")
    heading = re.search(r"^#\s+(.+)$", content, re.M)
    title = meta.get("title") or (
        heading.group(1).strip() if heading else path.stem.replace("-", " ").replace("_", " ")
    )
    category = str(meta.get("category", "")).lower()
    is_post = category == "posts" or (
        category != "articles" and len(content.split()) < POST_MAX_WORDS
    )
    metadata: dict[str, Any] = {"file": path.name}
    if decode_errors:
        metadata["decode_errors"] = decode_errors
    kind = Post if is_post else Article
    return kind(
        author=author,
        platform=str(meta.get("platform", "local")),
        url=str(meta.get("url") or path.resolve().as_uri()),
        title=str(title),
        content=content,
        published_at=_as_datetime(meta.get("date")),
        metadata=metadata,
    )


def import_folder(root: Path, author: str) -> Collected:
    result = Collected()
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() not in SUFFIXES:
            result.skipped.append(Failure(str(relative), "not a Markdown, HTML or text file"))
            continue
        result.add(str(path), import_file, path, author)
    return result


IMPORTER = Importer(
    "folder", lambda root: root, lambda root, author, options: import_folder(root, author)
)
