"""Self-query: read the filters (author, category) a query states in words, before searching.

The default reads them with rules against the authors the store knows, which is instant and offline;
`extract_filters_llm` asks the served model instead (the reference's approach) for phrasings rules miss.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from pydantic import BaseModel

CATEGORIES = ("articles", "posts", "repositories")

_CATEGORY_WORDS = {
    "article": "articles",
    "articles": "articles",
    "post": "posts",
    "posts": "posts",
    "repo": "repositories",
    "repos": "repositories",
    "repository": "repositories",
    "repositories": "repositories",
}
# "in her articles", "from Ada Quill's posts": a category named as a source, not "write a post".
_CATEGORY_SOURCE = re.compile(
    r"\b(?:in|from|across|among)\s+(?:[\w'-]+\s+){0,3}?"
    r"(articles?|posts?|repos|repo|repositor(?:y|ies))\b",
    re.IGNORECASE,
)


class QueryFilters(BaseModel):
    """What to restrict the search to; None means no restriction."""

    author: str | None = None
    category: str | None = None


_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def _normalise(text: str) -> str:
    return " " + _NON_ALNUM.sub(" ", text.lower()).strip() + " "


@lru_cache(maxsize=4096)  # every query is matched against every known author
def _normalised_name(author: str) -> str:
    return _normalise(author)


def find_author(query: str, known_authors: Iterable[str]) -> str | None:
    """The known author whose key or name ('ada-quill' or 'Ada Quill') appears in the query.

    The longest match wins, so 'ada quill jr' beats 'ada quill' when both are known.
    """
    text = _normalise(query)
    matches = [
        a
        for a in known_authors
        if a and _normalised_name(a) != "  " and _normalised_name(a) in text
    ]
    return max(matches, key=len) if matches else None


def find_category(query: str) -> str | None:
    match = _CATEGORY_SOURCE.search(query)
    return _CATEGORY_WORDS[match.group(1).lower()] if match else None


def extract_filters(query: str, known_authors: Iterable[str]) -> QueryFilters:
    """Rule-based self-query: exact author names and explicit 'in/from ... articles' phrases."""
    return QueryFilters(author=find_author(query, known_authors), category=find_category(query))


def extract_filters_llm(query: str, known_authors: list[str], model: Any) -> QueryFilters:
    """Ask the chat model for the author; only an author the store knows is accepted."""
    schema = {
        "type": "object",
        "properties": {"author": {"type": ["string", "null"]}},
        "required": ["author"],
    }
    messages = [
        {
            "role": "system",
            "content": "Extract the author the user asks about. Known authors: "
            + ", ".join(known_authors)
            + '. Answer with JSON {"author": name or null}.',
        },
        {"role": "user", "content": query},
    ]
    result = model.chat(messages, max_tokens=32, temperature=0.0, json_schema=schema)
    try:
        named = json.loads(result.text).get("author")
    except (ValueError, AttributeError):
        named = None
    author = find_author(named, known_authors) if isinstance(named, str) else None
    return QueryFilters(author=author, category=find_category(query))
