"""Raw documents as the warehouse stores them, grouped by category rather than by platform.

One collection per category (`articles`, `posts`, `repositories`), unique on (author, url). Every
crawler and importer produces these models; the feature pipeline reads them.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, Field, computed_field


class Category(StrEnum):
    """What a document is, whatever platform it came from; one warehouse collection each."""

    ARTICLES = "articles"
    POSTS = "posts"
    REPOSITORIES = "repositories"


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class RawDocument(BaseModel):
    """Common fields. `content` is text or Markdown; `metadata` holds source-specific extras."""

    category: ClassVar[Category]

    author: str = Field(min_length=1)
    platform: str = Field(description="medium, substack, linkedin, x, github, web, local, ...")
    url: str = Field(min_length=1, description="Source URL or a stable URI for imported files.")
    title: str | None = None
    content: str
    published_at: datetime | None = None
    collected_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    metadata: dict[str, Any] = Field(default_factory=dict)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def content_hash(self) -> str:
        return content_hash(self.content)

    def to_mongo(self) -> dict[str, Any]:
        return self.model_dump(mode="python")


class Article(RawDocument):
    category: ClassVar[Category] = Category.ARTICLES


class Post(RawDocument):
    category: ClassVar[Category] = Category.POSTS


class Repository(RawDocument):
    """`content` is the repository as Markdown: one fenced block per kept file, path as heading."""

    category: ClassVar[Category] = Category.REPOSITORIES


DOCUMENT_TYPES: dict[Category, type[RawDocument]] = {
    Category.ARTICLES: Article,
    Category.POSTS: Post,
    Category.REPOSITORIES: Repository,
}
