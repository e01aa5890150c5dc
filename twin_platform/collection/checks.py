"""Checks on what the warehouse holds for an author, run after every collection."""

from __future__ import annotations

from collections import defaultdict

from pymongo.database import Database

from twin_platform.checks import CheckResult
from twin_platform.documents import DOCUMENT_TYPES, Category

ALLOWED_PLATFORMS: dict[Category, frozenset[str]] = {
    Category.ARTICLES: frozenset({"medium", "substack", "linkedin", "web", "local"}),
    Category.POSTS: frozenset({"linkedin", "x", "local"}),
    Category.REPOSITORIES: frozenset({"github", "git"}),
}


def check_documents(db: Database, author: str, category: Category) -> list[CheckResult]:
    """No empty content, no duplicate URLs, every document valid for its category."""
    rows = list(db[category.value].find({"author": author}, {"_id": 0}))
    empty = [r.get("url", "?") for r in rows if not str(r.get("content") or "").strip()]
    seen: dict[str, int] = defaultdict(int)
    for r in rows:
        seen[str(r.get("url", "")).rstrip("/").lower()] += 1
    duplicates = [url for url, n in seen.items() if n > 1]
    invalid = []
    model = DOCUMENT_TYPES[category]
    for r in rows:
        try:
            doc = model.model_validate({k: v for k, v in r.items() if k != "content_hash"})
        except ValueError as exc:
            invalid.append(f"{r.get('url', '?')}: {str(exc).splitlines()[0]}")
            continue
        if doc.platform not in ALLOWED_PLATFORMS[category]:
            invalid.append(
                f"{doc.url}: platform {doc.platform!r} is not a {category.value} platform"
            )
    n = len(rows)
    return [
        CheckResult(
            "no_empty_content",
            not empty,
            f"{len(empty)} of {n} documents have no content",
            {"examples": empty[:5]},
        ),
        CheckResult(
            "no_duplicate_urls",
            not duplicates,
            f"{len(duplicates)} URLs stored more than once",
            {"examples": duplicates[:5]},
        ),
        CheckResult(
            "valid_category",
            not invalid,
            f"{len(invalid)} of {n} documents invalid for {category.value}",
            {"examples": invalid[:5]},
        ),
    ]
