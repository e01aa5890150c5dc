"""The interface a new crawler implements (one class per source), chosen by the URL's host."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    from twin_platform.collection.collected import Collected
    from twin_platform.collection.crawlers.http import SafeClient


class Crawler(Protocol):
    """A source reached over the network. `hosts` are the domains it claims in the dispatcher."""

    name: ClassVar[str]
    hosts: ClassVar[tuple[str, ...]]

    async def crawl(self, url: str, author: str, client: SafeClient) -> Collected: ...


def host_matches(host: str, domains: tuple[str, ...]) -> bool:
    host = host.lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in domains)
