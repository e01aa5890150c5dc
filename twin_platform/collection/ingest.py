"""Sources -> documents -> the warehouse, as idempotent upserts with honest counts.

Each document is keyed by (author, url). A document whose content hash and title match the stored
one is left alone (unchanged); a changed one is replaced (updated); a failing source or file costs
only itself (failed) and never touches what is already stored. Running twice changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pymongo import InsertOne, ReplaceOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from twin_platform.collection.collected import Collected, Failure, parse_failure
from twin_platform.collection.importers import ExportError, ImportOptions, import_export
from twin_platform.collection.sources import (
    AuthorConfig,
    SourceSpec,
)
from twin_platform.documents import Category, RawDocument
from twin_platform.settings import Settings
from twin_platform.storage.warehouse import ensure_indexes

log = logging.getLogger(__name__)
BATCH = 500
DUPLICATE_KEY = 11000


@dataclass
class Counts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "new": self.new,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "failed": self.failed,
        }


@dataclass
class IngestReport:
    author: str
    counts: dict[Category, Counts] = field(default_factory=lambda: {c: Counts() for c in Category})
    documents: dict[Category, list[RawDocument]] = field(
        default_factory=lambda: {c: [] for c in Category}
    )
    failures: dict[Category, list[Failure]] = field(
        default_factory=lambda: {c: [] for c in Category}
    )
    skipped: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total_failed(self) -> int:
        return sum(c.failed for c in self.counts.values())


def _source_category(source: SourceSpec) -> Category:
    """Where a source's failures are counted when no document says otherwise."""
    if source.is_repository or "github.com" in (source.url or ""):
        return Category.REPOSITORIES
    if source.kind in ("x", "linkedin") and source.url is not None:
        return Category.POSTS
    return Category.ARTICLES


def collect_source(source: SourceSpec, author: str, settings: Settings) -> Collected:
    """Documents from one path source (export or local repository). URLs go through `crawl`."""
    from twin_platform.collection.crawlers.github import (
        RepoLimits,
        clone_and_read,
        git_repository_for_folder,
    )
    from twin_platform.collection.crawlers.http import FetchError

    assert source.path is not None
    try:
        if source.is_repository:
            repo = git_repository_for_folder(source.path, settings.repos_cache_dir)
            url = source.url or source.path.resolve().as_uri()
            limits = RepoLimits(settings.repo_max_file_bytes, settings.repo_max_total_bytes)
            return Collected(documents=[clone_and_read(str(repo), author, url, limits)])
        options = ImportOptions(base_url=source.base_url)
        return import_export(source.path, author, source.kind, options, settings.import_max_bytes)
    except (ExportError, FetchError, OSError) as exc:
        reason = exc.reason if isinstance(exc, FetchError) else str(exc)
        return Collected(failures=[Failure(str(source.path), reason)])
    except Exception as exc:  # an importer bug costs this source, never the author's other ones
        return Collected(failures=[parse_failure(str(source.path), exc)])


def collect(
    author: AuthorConfig, settings: Settings, progress: Callable[[str], None] = lambda message: None
) -> tuple[Collected, dict[Category, list[Failure]]]:
    """Every document of every source, with failures grouped by the category they would have fed."""
    from twin_platform.collection.crawlers.dispatcher import CrawlTarget, crawl

    collected = Collected()
    failures: dict[Category, list[Failure]] = defaultdict(list)
    for source in (s for s in author.sources if s.path is not None):
        result = collect_source(source, author.name, settings)
        progress(
            f"{source.location}: {len(result.documents)} documents, {len(result.failures)} failed"
        )
        collected.extend(result)
        failures[_source_category(source)].extend(result.failures)
    url_sources = [s for s in author.sources if s.path is None]
    if url_sources:
        targets = [
            CrawlTarget(str(s.url), None if s.kind == "auto" else s.kind, tuple(s.allow_networks))
            for s in url_sources
        ]
        done: list[CrawlTarget] = []

        def report_progress(target: CrawlTarget, collected: Collected) -> None:
            done.append(target)
            if len(done) % max(1, len(targets) // 10) == 0 or len(done) == len(targets):
                progress(f"crawled {len(done)}/{len(targets)} URLs (last: {target.url})")

        result = crawl(targets, author.name, settings, on_done=report_progress)
        progress(
            f"{len(targets)} URLs: {len(result.documents)} documents, {len(result.failures)} failed"
        )
        collected.extend(result)
        by_url = {str(s.url): _source_category(s) for s in url_sources}
        for failure in result.failures:
            failures[by_url.get(failure.location, Category.ARTICLES)].append(failure)
    return collected, failures


def upsert(db: Database, author: str, documents: Iterable[RawDocument]) -> dict[Category, Counts]:
    """Write new and changed documents, skip unchanged ones; one category at a time, in batches."""
    counts = {c: Counts() for c in Category}
    by_category: dict[Category, dict[str, RawDocument]] = {c: {} for c in Category}
    for doc in documents:
        if doc.author != author:
            raise ValueError(f"document {doc.url} belongs to {doc.author!r}, not {author!r}")
        by_category[doc.category][doc.url] = doc  # the same URL twice in one run: the last one wins
    for category, docs in by_category.items():
        urls = list(docs)
        for start in range(0, len(urls), BATCH):
            batch = {url: docs[url] for url in urls[start : start + BATCH]}
            _upsert_batch(db[category.value], author, batch, counts[category])
    return counts


def _upsert_batch(
    collection: Collection, author: str, batch: dict[str, RawDocument], counts: Counts
) -> None:
    """New documents are inserted and changed ones replaced by `_id`: both stay fast on large
    collections, where an upsert by filter may scan. An insert that loses a race with another
    writer (duplicate key) is retried as an upsert, so concurrent runs never duplicate or fail."""
    stored = {
        row["url"]: row
        for row in collection.find(
            {"author": author, "url": {"$in": list(batch)}},
            {"url": 1, "content_hash": 1, "title": 1},
        )
    }
    pending: list[tuple[str, str, InsertOne | ReplaceOne]] = []  # (url, "new" | "updated", write)
    for url, doc in batch.items():
        row = stored.get(url)
        if row is None:
            pending.append((url, "new", InsertOne(doc.to_mongo())))
        elif (row.get("content_hash"), row.get("title")) == (doc.content_hash, doc.title):
            counts.unchanged += 1
        else:
            pending.append((url, "updated", ReplaceOne({"_id": row["_id"]}, doc.to_mongo())))
    if not pending:
        return
    errors: dict[int, dict] = {}
    try:
        collection.bulk_write([write for _, _, write in pending], ordered=False)
    except BulkWriteError as exc:
        errors = {error["index"]: error for error in exc.details.get("writeErrors", [])}
    for index, (url, kind, _) in enumerate(pending):
        error = errors.get(index)
        if error is not None and error.get("code") == DUPLICATE_KEY:
            collection.replace_one(
                {"author": author, "url": url}, batch[url].to_mongo(), upsert=True
            )
            counts.updated += 1
        elif error is not None:
            log.error("write failed: %s", error.get("errmsg"))
            counts.failed += 1
        else:
            setattr(counts, kind, getattr(counts, kind) + 1)


def ingest_author(
    author: AuthorConfig,
    db: Database,
    settings: Settings,
    progress: Callable[[str], None] = lambda message: None,
) -> IngestReport:
    """Collect every source of `author` and upsert the documents. Never deletes anything."""
    started = time.perf_counter()
    ensure_indexes(db)
    collected, failures = collect(author, settings, progress)
    report = IngestReport(author=author.name, skipped=collected.skipped)
    report.counts = upsert(db, author.name, collected.documents)
    for doc in collected.documents:
        report.documents[doc.category].append(doc)
    for category, items in failures.items():
        report.failures[category].extend(items)
        report.counts[category].failed += len(items)
    report.seconds = time.perf_counter() - started
    return report
