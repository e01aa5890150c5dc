"""What every crawler returns, and the interface a new source implements (one class per source)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

from twin_platform.documents import RawDocument

if TYPE_CHECKING:
    from twin_platform.crawlers.http import SafeClient


@dataclass(frozen=True)
class Failure:
    """One URL or file that could not be collected, and why (one line, safe to log)."""

    location: str
    reason: str


@dataclass
class Collected:
    documents: list[RawDocument] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    skipped: list[Failure] = field(default_factory=list)  # deliberately left out (drafts, retweets)

    def extend(self, other: Collected) -> None:
        self.documents.extend(other.documents)
        self.failures.extend(other.failures)
        self.skipped.extend(other.skipped)


class Crawler(Protocol):
    """A source reached over the network. `hosts` are the domains it claims in the dispatcher."""

    name: ClassVar[str]
    hosts: ClassVar[tuple[str, ...]]

    async def crawl(self, url: str, author: str, client: SafeClient) -> Collected: ...


def host_matches(host: str, domains: tuple[str, ...]) -> bool:
    host = host.lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in domains)
