"""The incremental feature sync of one author: warehouse → cleaned_documents → chunks → embedded_chunks.

Each stage does only what changed since its last run:
- cleaning compares the warehouse's content hashes with the stored ones (reading hashes only, not
  content), cleans new and changed documents, and deletes documents gone from the warehouse;
- chunking re-cuts documents whose content or chunker fingerprint changed;
- embedding deletes embedded chunks whose chunk disappeared (or whose model changed) and embeds only
  chunks without a vector, so an unchanged chunk of an edited document keeps its vector.
Work streams in batches, each batch one transaction: a crash loses at most the batch in flight, and
the next run resumes where it stopped. A run with nothing new writes nothing.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import polars as pl
import psycopg
from pydantic import BaseModel, Field
from pymongo.database import Database
from tqdm import tqdm

from twin_platform.documents import Category, content_hash
from twin_platform.features.chunking import Chunker
from twin_platform.features.cleaning import CLEANER_VERSION, clean
from twin_platform.features.embedding import Embedder, load_tokenizer, model_max_tokens
from twin_platform.storage.feature_store import writes
from twin_platform.storage.feature_store.records import Chunk, CleanedDocument


def document_id(category: str, author: str, url: str) -> str:
    return hashlib.sha256(f"{category}|{author}|{url}".encode()).hexdigest()


class CleaningReport(BaseModel):
    author: str
    in_warehouse: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    deleted: int = 0
    by_category: dict[str, int] = Field(default_factory=dict, description="Documents cleaned now.")
    by_status: dict[str, int] = Field(
        default_factory=dict, description="ok, truncated, empty, non_text."
    )
    by_language: dict[str, int] = Field(default_factory=dict)
    boilerplate_lines_removed: int = 0
    seconds: float = 0.0

    @property
    def written(self) -> int:
        return self.new + self.changed + self.deleted


class ChunkingReport(BaseModel):
    author: str
    documents: int = 0
    chunks: int = 0
    by_category: dict[str, int] = Field(default_factory=dict, description="Chunks written now.")
    seconds: float = 0.0


class EmbeddingReport(BaseModel):
    author: str
    model: str
    embedded: int = 0
    deleted: int = 0
    reindexed: int = 0
    seconds: float = 0.0
    encode_seconds: float = Field(default=0.0, description="Time in model.encode.")
    write_seconds: float = Field(
        default=0.0, description="Time in COPY (overlapped with encoding)."
    )

    @property
    def chunks_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds else 0.0


# -- cleaning -----------------------------------------------------------------------------------------
def warehouse_index(db: Database, author: str) -> pl.DataFrame:
    """document_id, category, url, content_hash of every raw document of an author (no content)."""
    rows: list[dict[str, Any]] = []
    for category in Category:
        for doc in db[category.value].find(
            {"author": author}, {"_id": 0, "url": 1, "content_hash": 1}
        ):
            url = doc.get("url")
            if not isinstance(url, str) or not url:
                continue
            rows.append(
                {
                    "document_id": document_id(category.value, author, url),
                    "category": category.value,
                    "url": url,
                    "content_hash": doc.get("content_hash")
                    if isinstance(doc.get("content_hash"), str)
                    else None,
                }
            )
    schema = {
        "document_id": pl.String,
        "category": pl.String,
        "url": pl.String,
        "content_hash": pl.String,
    }
    return pl.DataFrame(rows, schema=schema)


def plan_cleaning(index: pl.DataFrame, stored: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """(documents to clean, ids to delete). Documents without a stored hash are cleaned to find out."""
    joined = index.join(stored, on="document_id", how="left")
    todo = joined.filter(
        pl.col("stored_hash").is_null()
        | pl.col("content_hash").is_null()
        | (pl.col("content_hash") != pl.col("stored_hash"))
        | (pl.col("cleaner_version") != CLEANER_VERSION)
    )
    deleted = stored.join(index, on="document_id", how="anti")["document_id"].to_list()
    return todo, deleted


def _published_at(value: object) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _optional_text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _raw_hash(raw: dict[str, Any]) -> str:
    """The warehouse's hash when it has one, else computed (also for non-text content)."""
    if isinstance(raw.get("content_hash"), str):
        return raw["content_hash"]
    content = raw.get("content")
    return content_hash(content) if isinstance(content, str) else content_hash(repr(content))


def clean_row(
    raw: dict[str, Any], category: str, author: str, max_chars: int
) -> tuple[CleanedDocument, int]:
    """A warehouse document as a cleaned_documents row, and how many boilerplate lines it lost."""
    content = raw.get("content")
    cleaned = clean(content, category, max_chars=max_chars)
    row = CleanedDocument(
        document_id=document_id(category, author, raw["url"]),
        author=author,
        category=category,
        platform=_optional_text(raw.get("platform")) or "unknown",
        url=raw["url"],
        title=_optional_text(raw.get("title")),
        content=cleaned.content,
        content_hash=_raw_hash(raw),
        language=cleaned.language,
        published_at=_published_at(raw.get("published_at")),
        status=cleaned.status,
        cleaner_version=CLEANER_VERSION,
    )
    return row, cleaned.removed_lines


def sync_cleaned_documents(
    db: Database,
    conn: psycopg.Connection,
    author: str,
    batch_size: int = 256,
    max_chars: int = 2_000_000,
) -> CleaningReport:
    """Bring cleaned_documents of `author` in line with the warehouse. `conn` must be autocommit."""
    with writes.author_lock(conn, "clean", author):
        return _sync_cleaned_documents(db, conn, author, batch_size, max_chars)


def _sync_cleaned_documents(
    db: Database, conn: psycopg.Connection, author: str, batch_size: int, max_chars: int
) -> CleaningReport:
    started = time.perf_counter()
    index = warehouse_index(db, author)
    stored = writes.cleaned_state(conn, author)
    todo, deleted = plan_cleaning(index, stored)
    stored_rows = {r[0]: (r[1], r[2]) for r in stored.iter_rows()}
    report = CleaningReport(
        author=author, in_warehouse=index.height, deleted=writes.delete_documents(conn, deleted)
    )
    statuses: Counter[str] = Counter()
    languages: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    with tqdm(total=todo.height, desc=f"clean {author}", unit="doc", disable=None) as progress:
        for category in Category:
            urls = todo.filter(pl.col("category") == category.value)["url"].to_list()
            for start in range(0, len(urls), batch_size):
                batch = urls[start : start + batch_size]
                rows = []
                for raw in db[category.value].find({"author": author, "url": {"$in": batch}}):
                    row, removed = clean_row(raw, category.value, author, max_chars)
                    if stored_rows.get(row.document_id) == (row.content_hash, CLEANER_VERSION):
                        report.unchanged += 1  # its hash was missing in the warehouse, not new
                        continue
                    rows.append(row)
                    report.boilerplate_lines_removed += removed
                    statuses[row.status] += 1
                    languages[row.language or "und"] += 1
                    categories[category.value] += 1
                    if row.document_id in stored_rows:
                        report.changed += 1
                    else:
                        report.new += 1
                writes.upsert_cleaned(conn, rows)
                progress.update(len(batch))
    report.unchanged += index.height - todo.height
    report.by_status, report.by_language, report.by_category = (
        dict(statuses),
        dict(languages),
        dict(categories),
    )
    report.seconds = time.perf_counter() - started
    return report


# -- chunking -----------------------------------------------------------------------------------------
def build_chunker(model: str, max_tokens: int = 256) -> Chunker:
    """A chunker on the model's own tokenizer, never longer than the model reads."""
    return Chunker(load_tokenizer(model), max_tokens=min(max_tokens, model_max_tokens(model)))


def chunk_rows(document: dict[str, Any], chunker: Chunker) -> list[Chunk]:
    if document["status"] not in ("ok", "truncated"):
        return []
    title = {"title": document["title"]} if document.get("title") else {}
    return [
        Chunk(
            chunk_id=c.chunk_id,
            document_id=document["document_id"],
            author=document["author"],
            category=document["category"],
            source_url=document["url"],
            chunk_index=c.chunk_index,
            content=c.content,
            token_count=c.token_count,
            metadata=title | c.metadata,
        )
        for c in chunker.chunk(document["document_id"], document["category"], document["content"])
    ]


def sync_chunks(
    conn: psycopg.Connection, author: str, chunker: Chunker, batch_size: int = 256
) -> ChunkingReport:
    """Re-chunk documents that changed (or all, when the chunker changed). `conn` must be autocommit."""
    with writes.author_lock(conn, "chunk", author):
        return _sync_chunks(conn, author, chunker, batch_size)


def _sync_chunks(
    conn: psycopg.Connection, author: str, chunker: Chunker, batch_size: int
) -> ChunkingReport:
    started = time.perf_counter()
    ids = writes.documents_to_chunk(conn, author, chunker.fingerprint)
    report = ChunkingReport(author=author, documents=len(ids))
    categories: Counter[str] = Counter()
    with tqdm(total=len(ids), desc=f"chunk {author}", unit="doc", disable=None) as progress:
        for start in range(0, len(ids), batch_size):
            batch = ids[start : start + batch_size]
            rows = [
                row
                for doc in writes.load_documents(conn, batch)
                for row in chunk_rows(doc, chunker)
            ]
            report.chunks += writes.replace_chunks(conn, batch, rows, chunker.fingerprint)
            categories.update(row.category for row in rows)
            progress.update(len(batch))
    report.by_category = dict(categories)
    report.seconds = time.perf_counter() - started
    return report


# -- embedding ----------------------------------------------------------------------------------------
def sync_embeddings(
    conn: psycopg.Connection, author: str, embedder: Embedder, batch_size: int = 256
) -> EmbeddingReport:
    """Embed chunks that have no vector yet; drop vectors of chunks that are gone.

    Every database call runs on one writer thread, in order, so the connection is never shared
    between threads; the main thread encodes batch i while the writer stores batch i-1 and reads
    batch i+1. `conn` must be autocommit.
    """
    started = time.perf_counter()
    report = EmbeddingReport(author=author, model=embedder.name)
    with writes.author_lock(conn, "embed", author):
        declared = writes.embedding_dimension(conn)
        if embedder.dimension != declared:
            raise ValueError(
                f"model {embedder.name} gives {embedder.dimension}-d vectors but embedded_chunks.embedding "
                f"is vector({declared}): pick a {declared}-d model or add a migration for the new size."
            )
        report.deleted, report.reindexed = writes.prune_embeddings(conn, author, embedder.name)
        missing = writes.missing_embeddings(conn, author)
        batches = [missing[i : i + batch_size] for i in range(0, len(missing), batch_size)]
        with (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-writer") as database,
            tqdm(
                total=sum(map(len, batches)), desc=f"embed {author}", unit="chunk", disable=None
            ) as progress,
        ):
            stored: list[Future[int]] = []
            upcoming = database.submit(writes.load_chunks, conn, batches[0]) if batches else None
            for index in range(len(batches)):
                assert upcoming is not None
                chunks = upcoming.result()
                if index + 1 < len(batches):
                    upcoming = database.submit(writes.load_chunks, conn, batches[index + 1])
                encode_started = time.perf_counter()
                vectors = embedder.encode([chunk.content for chunk in chunks])
                report.encode_seconds += time.perf_counter() - encode_started
                stored.append(
                    database.submit(_timed_insert, conn, chunks, vectors, embedder.name, report)
                )
                progress.update(len(chunks))
            report.embedded = sum(future.result() for future in stored)
    report.seconds = time.perf_counter() - started
    return report


def _timed_insert(
    conn: psycopg.Connection,
    chunks: list[Chunk],
    vectors: Any,
    model: str,
    report: EmbeddingReport,
) -> int:
    started = time.perf_counter()
    written = writes.insert_embeddings(conn, chunks, vectors, model)
    report.write_seconds += time.perf_counter() - started
    return written
