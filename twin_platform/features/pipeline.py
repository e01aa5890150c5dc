"""The incremental feature sync of one author: warehouse → cleaned_documents → chunks → embedded_chunks.

Each stage does only what changed since its last run:
- cleaning compares the warehouse's content hashes with the stored ones (reading hashes only, not
  content), cleans new and changed documents, and deletes documents gone from the warehouse; when
  anything changed, the chrome of each affected (author, platform) is measured again over all its
  documents first, and documents cleaned under another chrome set are cleaned again;
- chunking re-cuts documents whose content or chunker fingerprint changed;
- embedding deletes embedded chunks whose chunk disappeared (or whose model changed) and embeds only
  chunks without a vector, so an unchanged chunk of an edited document keeps its vector.
Work streams in batches, each batch one transaction: a crash loses at most the batch in flight, and
the next run resumes where it stopped. A run with nothing new writes nothing.
"""

from __future__ import annotations

import hashlib
import queue
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl
import psycopg
from pydantic import BaseModel, Field
from pymongo.database import Database
from tqdm import tqdm

from twin_platform.documents import Category, content_hash
from twin_platform.features.boilerplate import Profile
from twin_platform.features.chunking import Chunker
from twin_platform.features.cleaning import (
    CLEANER_VERSION,
    CleanedText,
    DocumentContext,
    clean,
    corpus_profile,
)
from twin_platform.features.embedding import TextEmbedder, load_tokenizer, model_max_tokens
from twin_platform.storage.feature_store import hnsw, writes
from twin_platform.storage.feature_store.records import Chunk, CleanedDocument
from twin_platform.storage.postgres import reconnect


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
    boilerplate: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per platform measured now: documents, threshold, fingerprint, chrome lines.",
    )
    dropped_lines: dict[str, int] = Field(
        default_factory=dict, description="Lines dropped as chrome now, by documents dropping them."
    )
    scrubbed: dict[str, int] = Field(
        default_factory=dict, description="Secrets and PII replaced now, by kind."
    )
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
    backend: str = ""
    device: str = ""
    embedded: int = 0
    deleted: int = 0
    reindexed: int = 0
    seconds: float = 0.0
    encode_seconds: float = Field(default=0.0, description="Time in model.encode.")
    read_seconds: float = Field(
        default=0.0, description="Time reading pages of chunks (overlapped with encoding)."
    )
    write_seconds: float = Field(
        default=0.0, description="Time in COPY, summed over the writers (overlapped)."
    )
    index_deferred: bool = Field(
        default=False, description="Bulk load: rows written first, the HNSW index built after."
    )
    index: hnsw.BuildReport | None = None
    author_indexes: list[hnsw.BuildReport] = Field(
        default_factory=list, description="Authors' own indexes built or dropped by this run."
    )

    @property
    def chunks_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds else 0.0


# -- cleaning -----------------------------------------------------------------------------------------
def warehouse_index(db: Database, author: str) -> pl.DataFrame:
    """document_id, category, url, content_hash, platform of an author's raw documents (no content)."""
    rows: list[dict[str, Any]] = []
    for category in Category:
        for doc in db[category.value].find(
            {"author": author}, {"_id": 0, "url": 1, "content_hash": 1, "platform": 1}
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
                    "platform": _optional_text(doc.get("platform")) or "unknown",
                }
            )
    schema = {
        "document_id": pl.String,
        "category": pl.String,
        "url": pl.String,
        "content_hash": pl.String,
        "platform": pl.String,
    }
    return pl.DataFrame(rows, schema=schema)


def plan_cleaning(
    index: pl.DataFrame, stored: pl.DataFrame, versions: dict[str, str] | None = None
) -> tuple[pl.DataFrame, list[str]]:
    """(documents to clean, ids to delete). Documents without a stored hash are cleaned to find out.

    `versions` gives the cleaner version expected per platform (the cleaner's own plus the
    fingerprint of the platform's chrome); other platforms only need the cleaner's own."""
    joined = index.join(stored, on="document_id", how="left").with_columns(
        expected=pl.col("platform").replace_strict(
            versions or {}, default=None, return_dtype=pl.String
        )
    )
    base = pl.col("cleaner_version").str.split("+").list.first()
    is_repository = pl.col("category") == Category.REPOSITORIES.value
    todo = joined.filter(
        pl.col("stored_hash").is_null()
        | pl.col("content_hash").is_null()
        | (pl.col("content_hash") != pl.col("stored_hash"))
        | (base != CLEANER_VERSION)
        | (
            ~is_repository
            & pl.col("expected").is_not_null()
            & (pl.col("cleaner_version") != pl.col("expected"))
        )
    )
    deleted = stored.join(index, on="document_id", how="anti")["document_id"].to_list()
    return todo.drop("expected"), deleted


def cleaner_version(category: str, profile: Profile | None) -> str:
    """The cleaner's version, plus for prose the fingerprint of the chrome it was cleaned with."""
    if category == Category.REPOSITORIES.value or profile is None:
        return CLEANER_VERSION
    return f"{CLEANER_VERSION}+{profile.fingerprint}"


def platform_profiles(db: Database, author: str, platforms: set[str]) -> dict[str, Profile]:
    """The chrome of each of the author's platforms, over all its prose documents in the warehouse."""
    profiles: dict[str, Profile] = {}
    for platform in sorted(platforms):
        query = {"author": author, "platform": platform if platform != "unknown" else None}
        contents = (
            (str(doc.get("url")), doc.get("content"))
            for category in (Category.ARTICLES, Category.POSTS)
            for doc in db[category.value].find(query, {"_id": 0, "url": 1, "content": 1})
        )
        profiles[platform] = corpus_profile(contents)
    return profiles


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
    raw: dict[str, Any],
    category: str,
    author: str,
    max_chars: int,
    profile: Profile | None = None,
) -> tuple[CleanedDocument, CleanedText]:
    """A warehouse document as a cleaned_documents row, cleaned with its platform's chrome."""
    metadata = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
    context = DocumentContext(
        title=_optional_text(raw.get("title")),
        subtitle=_optional_text(metadata.get("subtitle")),
        profile=profile or Profile(),
        document=raw["url"],
    )
    cleaned = clean(raw.get("content"), category, max_chars=max_chars, context=context)
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
        cleaner_version=cleaner_version(category, profile),
    )
    return row, cleaned


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
    profiles: dict[str, Profile] = {}
    if todo.height or deleted:  # the corpus changed: measure its chrome again where it may have
        platforms = set(index["platform"]) if deleted else set(todo["platform"])
        profiles = platform_profiles(db, author, platforms)
        versions = {p: cleaner_version(Category.ARTICLES.value, f) for p, f in profiles.items()}
        todo, deleted = plan_cleaning(index, stored, versions)
    stored_rows = {r[0]: (r[1], r[2]) for r in stored.iter_rows()}
    report = CleaningReport(
        author=author, in_warehouse=index.height, deleted=writes.delete_documents(conn, deleted)
    )
    report.boilerplate = {p: _profile_summary(f) for p, f in profiles.items()}
    statuses: Counter[str] = Counter()
    languages: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    scrubbed: Counter[str] = Counter()
    with tqdm(total=todo.height, desc=f"clean {author}", unit="doc", disable=None) as progress:
        for category in Category:
            urls = todo.filter(pl.col("category") == category.value)["url"].to_list()
            for start in range(0, len(urls), batch_size):
                batch = urls[start : start + batch_size]
                rows = []
                for raw in db[category.value].find({"author": author, "url": {"$in": batch}}):
                    platform = _optional_text(raw.get("platform")) or "unknown"
                    row, cleaned = clean_row(
                        raw, category.value, author, max_chars, profiles.get(platform)
                    )
                    if stored_rows.get(row.document_id) == (row.content_hash, row.cleaner_version):
                        report.unchanged += 1  # its hash was missing in the warehouse, not new
                        continue
                    rows.append(row)
                    report.boilerplate_lines_removed += cleaned.removed_lines
                    dropped.update({" ".join(line.split()) for line in cleaned.dropped})
                    scrubbed.update(cleaned.scrubbed)
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
    report.dropped_lines = dict(sorted(dropped.items(), key=lambda kv: (-kv[1], kv[0]))[:100])
    report.scrubbed = dict(scrubbed)
    report.seconds = time.perf_counter() - started
    return report


def _profile_summary(profile: Profile, limit: int = 50) -> dict[str, Any]:
    return {
        "documents": profile.documents,
        "threshold": profile.threshold,
        "fingerprint": profile.fingerprint,
        "chrome_lines": len(profile.lines),
        "kept_once": len(profile.owners),
        "top": dict(profile.top(limit)),
    }


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
    conn: psycopg.Connection,
    author: str,
    embedder: TextEmbedder,
    batch_size: int = 256,
    index: hnsw.IndexPolicy | None = None,
    on_index_progress: hnsw.Progress | None = None,
    writers: int = 2,
) -> EmbeddingReport:
    """Embed chunks that have no vector yet; drop vectors of chunks that are gone; keep the index.

    Chunks stream in keyset pages of `batch_size` (constant memory at any corpus size): a reader
    connection fetches page i+1 while the main thread encodes page i and `writers` connections
    COPY the pages before it, each page its own transaction. A bulk load (`hnsw.defer_for_load`)
    drops the HNSW index first and builds it once at the end; every run ends by building the index
    if it is missing or defined otherwise than `index.spec`, and then each large author's own index
    (`hnsw.ensure_author_indexes`). `conn` must be autocommit.
    """
    started = time.perf_counter()
    index = index or hnsw.IndexPolicy()
    report = EmbeddingReport(
        author=author, model=embedder.name, backend=embedder.backend, device=embedder.device
    )
    with writes.author_lock(conn, "embed", author):
        declared = writes.embedding_dimension(conn)
        if embedder.dimension != declared:
            raise ValueError(
                f"model {embedder.name} gives {embedder.dimension}-d vectors but embedded_chunks.embedding "
                f"is vector({declared}): pick a {declared}-d model or add a migration for the new size."
            )
        report.deleted, report.reindexed = writes.prune_embeddings(conn, author, embedder.name)
        missing = writes.count_missing_embeddings(conn, author)
        stored = writes.stored_embeddings(conn, at_most=index.bulk_load_rows)
        report.index_deferred = hnsw.defer_for_load(missing, stored, index.bulk_load_rows)
        if report.index_deferred:
            hnsw.drop_index(conn)
        if missing:
            _embed_missing(conn, author, embedder, batch_size, writers, missing, report)
        if report.index_deferred:
            conn.execute("ANALYZE embedded_chunks")  # planner and full-text statistics, once
        report.index = hnsw.ensure_index(conn, index.spec, index.budget, on_index_progress)
        report.author_indexes = hnsw.ensure_author_indexes(
            conn, index.spec, index.budget, index.author_index_rows, on_index_progress
        )
    report.seconds = time.perf_counter() - started
    return report


def _embed_missing(
    conn: psycopg.Connection,
    author: str,
    embedder: TextEmbedder,
    page_size: int,
    writers: int,
    missing: int,
    report: EmbeddingReport,
) -> None:
    """Encode and store the author's chunks without a vector, a page at a time, into `report`."""
    with ExitStack() as stack:
        reader = stack.enter_context(reconnect(conn))
        idle: queue.SimpleQueue[psycopg.Connection] = queue.SimpleQueue()
        for _ in range(writers):
            idle.put(stack.enter_context(reconnect(conn)))

        def write(chunks: list[Chunk], vectors: np.ndarray) -> tuple[int, float]:
            started, writer = time.perf_counter(), idle.get()
            try:
                written = writes.insert_embeddings(writer, chunks, vectors, embedder.name)
            finally:
                idle.put(writer)
            return written, time.perf_counter() - started

        def read(after: tuple[int, str]) -> tuple[list[Chunk], float]:
            started = time.perf_counter()
            page = writes.next_missing_chunks(reader, author, after, page_size)
            return page, time.perf_counter() - started

        reading = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="embed-reader"))
        writing = stack.enter_context(
            ThreadPoolExecutor(writers, thread_name_prefix="embed-writer")
        )
        progress = stack.enter_context(
            tqdm(total=missing, desc=f"embed {author}", unit="chunk", disable=None)
        )
        in_flight: deque[Future[tuple[int, float]]] = deque()

        def settle(future: Future[tuple[int, float]]) -> None:
            written, seconds = future.result()
            report.embedded += written
            report.write_seconds += seconds

        upcoming = reading.submit(read, writes.FIRST_KEY)
        while chunks := _page(upcoming, report):
            last = chunks[-1]
            upcoming = reading.submit(read, (last.token_count, last.chunk_id))
            encode_started = time.perf_counter()
            vectors = embedder.encode([chunk.content for chunk in chunks])
            report.encode_seconds += time.perf_counter() - encode_started
            in_flight.append(writing.submit(write, chunks, vectors))
            while len(in_flight) > writers + 1:  # a fast encoder waits for the database
                settle(in_flight.popleft())
            progress.update(len(chunks))
        for future in in_flight:
            settle(future)


def _page(future: Future[tuple[list[Chunk], float]], report: EmbeddingReport) -> list[Chunk]:
    chunks, seconds = future.result()
    report.read_seconds += seconds
    return chunks
