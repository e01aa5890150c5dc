"""Authors and their sources, kept in one YAML file that the CLI, the launchpad and the sensor share.

```yaml
authors:
  - name: ada-quill              # the Dagster partition key
    display_name: Ada Quill
    sources:
      - https://medium.com/@adaquill          # a URL is crawled (crawler chosen by domain)
      - path: exports/substack                # a path is an export (zip or folder), kind detected
        base_url: https://adaquill.substack.com
      - path: repos/quillstack                # a local repository ...
        kind: git
        url: https://github.com/ada-quill/quillstack   # ... stored under its public URL
      - url: http://wiki.corp.example/ada     # an internal site: its network allowed for this
        allow_networks: [10.1.2.0/24]         # source only (the SSRF guard stays on for others)
```

Relative paths are resolved against the file's folder. Writes are atomic and locked, so two
processes registering authors at once both land.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from twin_platform.addresses import parse_allow_network
from twin_platform.collection.crawlers.dispatcher import CRAWLER_KINDS
from twin_platform.collection.importers import EXPORT_KINDS
from twin_platform.fsutil import write_atomic
from twin_platform.servers.process import exclusive_lock
from twin_platform.settings import PROJECT_ROOT

SAMPLE_AUTHORS_FILE = PROJECT_ROOT / "data" / "sample" / "authors.yaml"
SAMPLE_AUTHOR = "ada-quill"
AUTHOR_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
SOURCE_KINDS = ("auto", *CRAWLER_KINDS, *(k for k in EXPORT_KINDS if k not in CRAWLER_KINDS))


class SourceSpec(BaseModel):
    """A URL to crawl, or a path to an export or a local repository."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        default=None, description="URL to crawl; for a local repository, its public URL."
    )
    path: Path | None = Field(
        default=None, description="Export zip/folder, or a local git repository."
    )
    kind: str = Field(
        default="auto", description=f"One of {SOURCE_KINDS}; auto = by domain or export layout."
    )
    base_url: str | None = Field(
        default=None, description="Public site of an export (Substack), for real URLs."
    )
    allow_networks: list[str] = Field(
        default_factory=list,
        description="CIDRs this source may reach despite the SSRF guard (an intranet wiki:"
        " ['10.1.2.0/24']), on top of TWIN_CRAWL_ALLOW_NETWORKS.",
    )

    @field_validator("allow_networks")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        return [parse_allow_network(entry) for entry in value]

    @model_validator(mode="after")
    def _one_location(self) -> SourceSpec:
        if self.url is None and self.path is None:
            raise ValueError("a source needs a url or a path")
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; one of {SOURCE_KINDS}")
        if self.url is not None and not re.match(r"^https?://[^/\s]+", self.url):
            raise ValueError(f"not an http(s) URL: {self.url!r}")
        return self

    @property
    def location(self) -> str:
        return str(self.path) if self.path is not None else str(self.url)

    @property
    def is_repository(self) -> bool:
        return self.kind in ("git", "github")


def parse_source(text: str) -> SourceSpec:
    """A command-line SOURCE: a URL, or a path (made absolute) to an export or a repository."""
    text = text.strip()
    if re.match(r"^https?://", text):
        return SourceSpec(url=text)
    path = Path(text).expanduser().resolve()
    if not path.exists():
        raise ValueError(f"{text}: neither an http(s) URL nor an existing file or folder")
    kind = "git" if (path / ".git").exists() else "auto"
    return SourceSpec(path=path, kind=kind)


class AuthorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Partition key: lower case letters, digits, '.', '_', '-'.")
    display_name: str | None = None
    sources: list[SourceSpec] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not AUTHOR_NAME.match(value):
            raise ValueError(f"author name {value!r} must match {AUTHOR_NAME.pattern}")
        return value

    @field_validator("sources", mode="before")
    @classmethod
    def _strings_are_urls_or_paths(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        return [
            {"url": s}
            if isinstance(s, str) and re.match(r"^https?://", s)
            else {"path": s}
            if isinstance(s, str)
            else s
            for s in value
        ]


class SourcesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    authors: list[AuthorConfig] = Field(default_factory=list)

    def get(self, name: str) -> AuthorConfig | None:
        return next((a for a in self.authors if a.name == name), None)


def load_sources(path: Path) -> SourcesFile:
    """The file's authors with absolute paths; a missing or empty file has none."""
    if not path.exists():
        return SourcesFile()
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    try:
        sources = SourcesFile.model_validate(raw)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    base = path.resolve().parent
    for author in sources.authors:
        for source in author.sources:
            if source.path is not None and not source.path.is_absolute():
                source.path = (base / source.path).resolve()
    return sources


def _write(path: Path, sources: SourcesFile) -> None:
    data = sources.model_dump(mode="json", exclude_defaults=True)
    header = "# Authors and their sources (twin ingest, the add_author job). Paths may be relative to this file.\n"
    write_atomic(path, header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def register_author(
    path: Path, name: str, sources: list[SourceSpec], display_name: str | None = None
) -> AuthorConfig:
    """Add the author, or add new sources to an existing one (sources already listed are kept once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(path.parent / f".{path.name}.lock"):
        current = load_sources(path)
        author = current.get(name)
        if author is None:
            author = AuthorConfig(name=name, display_name=display_name)
            current.authors.append(author)
        elif display_name:
            author.display_name = display_name
        known = {(s.url, s.path) for s in author.sources}
        for source in sources:
            if (source.url, source.path) not in known:
                author.sources.append(source)
                known.add((source.url, source.path))
        _write(path, current)
        return author


def register_sample_author(path: Path) -> AuthorConfig | None:
    """Register the shipped sample author when the file has no author yet; None if it has one."""
    if load_sources(path).authors:
        return None
    sample = load_sources(SAMPLE_AUTHORS_FILE).get(SAMPLE_AUTHOR)
    assert sample is not None, f"{SAMPLE_AUTHORS_FILE} lost its sample author"
    return register_author(path, sample.name, sample.sources, sample.display_name)
