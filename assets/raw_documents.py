"""Raw documents per author: crawled pages and imported exports in the warehouse, one category per asset.

One multi-asset, because one pass over an author's sources feeds all three categories. Its work is
`twin_platform.collection.ingest.ingest_author`; checks run on what the warehouse holds after each pass.
"""

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
from pydantic import Field

from assets.check_results import asset_check_result
from assets.partitions import authors
from resources import SettingsResource, WarehouseResource
from twin_platform.collection import ingest
from twin_platform.collection.checks import check_documents
from twin_platform.collection.collected import Failure
from twin_platform.collection.inbox import with_inbox
from twin_platform.collection.sources import load_sources
from twin_platform.documents import Category, RawDocument
from twin_platform.reporting import bar_chart_markdown, markdown_table
from twin_platform.settings import load_settings

ASSET_KEYS = {
    Category.ARTICLES: dg.AssetKey("raw_articles"),
    Category.POSTS: dg.AssetKey("raw_posts"),
    Category.REPOSITORIES: dg.AssetKey("raw_repositories"),
}
DESCRIPTIONS = {
    Category.ARTICLES: "Long-form writing (blogs, newsletters, LinkedIn articles) in the `articles` collection.",
    Category.POSTS: "Short posts (LinkedIn, X) in the `posts` collection.",
    Category.REPOSITORIES: "Code repositories as Markdown (kept files only) in the `repositories` collection.",
}
CHECKS = ("no_empty_content", "no_duplicate_urls", "valid_category")


class CollectConfig(dg.Config):
    sources_file: str = Field(
        default_factory=lambda: str(load_settings().authors_file),
        description="Authors YAML to read; default TWIN_SOURCES_FILE or TWIN_HOME/authors.yaml.",
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            key,
            group_name="collection",
            kinds={"mongodb"},
            partitions_def=authors,
            description=DESCRIPTIONS[category],
        )
        for category, key in ASSET_KEYS.items()
    ],
    check_specs=[
        dg.AssetCheckSpec(name, asset=key, blocking=True)
        for key in ASSET_KEYS.values()
        for name in CHECKS
    ],
    can_subset=False,
)
def raw_documents(
    context: dg.AssetExecutionContext,
    config: CollectConfig,
    settings: SettingsResource,
    warehouse: WarehouseResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Collect every source of the partition's author, and the exports in their inbox folder, and
    upsert into the warehouse (idempotent)."""
    sources_file = Path(config.sources_file)
    name, inbox_dir = context.partition_key, settings.settings.inbox_dir
    author = with_inbox(load_sources(sources_file).get(name), name, inbox_dir)
    if author is None:
        raise dg.Failure(
            f"author {name!r} is not in {sources_file} and has no export in {inbox_dir / name}:"
            " add it with `twin ingest --author NAME SOURCE...`, the add_author job, or drop an"
            " export there"
        )
    db = warehouse.db()
    report = ingest.ingest_author(author, db, settings.settings, progress=context.log.info)
    context.log.info(
        "%s: %s in %.1f s",
        author.name,
        {c.value: counts.as_dict() for c, counts in report.counts.items()},
        report.seconds,
    )
    failures = [f for items in report.failures.values() for f in items]
    for failure in failures:
        context.log.error("failed: %s: %s", failure.location, failure.reason)
    if failures and not any(report.documents.values()):  # one good document is a usable run
        raise dg.Failure(
            description=f"{author.name}: no document collected, {len(failures)} failed:\n"
            + "\n".join(f"- {f.location}: {f.reason}" for f in failures[:20]),
            metadata={"failures": dg.MetadataValue.md(failures_markdown(failures))},
        )
    for category, key in ASSET_KEYS.items():
        counts = report.counts[category]
        documents = report.documents[category]
        metadata: dict[str, dg.RawMetadataValue] = {
            **{name: dg.MetadataValue.int(value) for name, value in counts.as_dict().items()},
            "documents_stored": dg.MetadataValue.int(
                db[category.value].count_documents({"author": author.name})
            ),
            "words_collected": dg.MetadataValue.int(sum(len(d.content.split()) for d in documents)),
            "preview": dg.MetadataValue.md(preview_markdown(documents)),
            "failures": dg.MetadataValue.md(failures_markdown(report.failures[category])),
            "sources": dg.MetadataValue.json([s.location for s in author.sources]),
            "sources_file": dg.MetadataValue.path(str(sources_file)),
            "seconds": dg.MetadataValue.float(round(report.seconds, 2)),
        }
        if any(d.published_at for d in documents):
            metadata["words_per_month"] = dg.MetadataValue.md(
                words_per_month_markdown(documents, f"{key.to_user_string()}: words per month")
            )
        yield dg.MaterializeResult(asset_key=key, metadata=metadata)
        for result in check_documents(db, author.name, category):
            yield asset_check_result(result, key)


def preview_markdown(documents: list[RawDocument], limit: int = 10) -> str:
    newest = sorted(
        documents, key=lambda d: d.published_at.isoformat() if d.published_at else "", reverse=True
    )
    rows = [
        {
            "title": d.title,
            "platform": d.platform,
            "words": len(d.content.split()),
            "published": d.published_at.date().isoformat() if d.published_at else "",
            "url": d.url,
        }
        for d in newest
    ]
    return markdown_table(rows, limit=limit, width=90, empty="_no documents collected in this run_")


def failures_markdown(failures: list[Failure], limit: int = 20) -> str:
    rows = [{"source": f.location, "reason": f.reason} for f in failures]
    return markdown_table(rows, limit=limit, empty="_none_")


def words_per_month_markdown(documents: list[RawDocument], title: str) -> str:
    months: Counter[str] = Counter()
    for doc in documents:
        if doc.published_at is not None:
            months[doc.published_at.strftime("%Y-%m")] += len(doc.content.split())
    keys = sorted(months)
    return bar_chart_markdown(keys, [months[k] for k in keys], title, ylabel="words")
