"""The feature store's records: a cleaned document, and one chunk type from the table to the API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


@dataclass(frozen=True)
class CleanedDocument:
    """A row of `cleaned_documents`: what chunking and the datasets read."""

    document_id: str
    author: str
    category: str
    platform: str
    url: str
    title: str | None
    content: str
    content_hash: str
    language: str | None
    published_at: datetime | None
    status: str
    cleaner_version: str


class Chunk(BaseModel):
    """A chunk as the chunker cuts it, the tables store it and retrieval returns it.

    Retrieval fills `score` (fused, then reranked; higher is better), `similarity` (cosine to the
    query) and `ranks` (its position in each ranking it appeared in, e.g. {"vector:0": 1}).
    """

    chunk_id: str
    document_id: str
    author: str
    category: str
    source_url: str
    content: str
    chunk_index: int = 0
    token_count: int = 0
    metadata: dict[str, Any] = Field(default_factory=dict)
    score: float = 0.0
    similarity: float | None = None
    ranks: dict[str, int] = Field(default_factory=dict)
