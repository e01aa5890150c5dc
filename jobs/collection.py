"""Collection jobs: collect an author's documents, and register a new author from the launchpad."""

import dagster as dg
from pydantic import Field

from assets.partitions import add_authors, authors
from twin_platform.collection.sources import parse_source, register_author
from twin_platform.settings import load_settings

collect_job = dg.define_asset_job(
    "collect_documents",
    selection=dg.AssetSelection.groups("collection"),
    partitions_def=authors,
    description="Crawl and import one author's sources into the warehouse (raw_articles, raw_posts, raw_repositories).",
)


class AddAuthorConfig(dg.Config):
    name: str = Field(
        description="Author key (the partition): lower case letters, digits, '.', '_', '-'."
    )
    display_name: str | None = Field(
        default=None, description="Name shown in prompts, e.g. 'Ada Quill'."
    )
    sources: list[str] = Field(
        description="URLs to crawl, or paths (on the code server) to exports or repositories."
    )


@dg.op
def register_author_sources(context: dg.OpExecutionContext, config: AddAuthorConfig) -> None:
    """Write the author's sources to the sources file and add the author's partition.

    The `author_sources` sensor then sees the new sources and launches `collect_documents`.
    """
    try:
        sources = [parse_source(s) for s in config.sources]
    except ValueError as exc:
        raise dg.Failure(str(exc)) from exc
    path = load_settings().authors_file
    author = register_author(path, config.name, sources, config.display_name)
    add_authors(context.instance, [author.name])
    context.log.info("registered %s with %d sources in %s", author.name, len(author.sources), path)


@dg.job(
    description="Add an author and their sources (URLs, exports, repositories); collection follows."
)
def add_author() -> None:
    register_author_sources()
