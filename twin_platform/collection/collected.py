"""What crawlers and importers hand to ingestion: the documents collected, and what failed and why.

One broken page or file costs only itself: `Collected.add` turns any exception raised while
reading one document into that document's `Failure`, and collection goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ParamSpec

from twin_platform.documents import RawDocument

log = logging.getLogger(__name__)
P = ParamSpec("P")


@dataclass(frozen=True)
class Failure:
    """One URL or file that could not be collected, and why (one line, safe to log)."""

    location: str
    reason: str


class Skipped(Failure):
    """A document deliberately left out (a draft, a retweet): listed apart from failures."""


@dataclass
class Collected:
    documents: list[RawDocument] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    skipped: list[Failure] = field(default_factory=list)  # deliberately left out (drafts, retweets)

    def extend(self, other: Collected) -> None:
        self.documents.extend(other.documents)
        self.failures.extend(other.failures)
        self.skipped.extend(other.skipped)

    def add(
        self,
        location: str,
        parse: Callable[P, RawDocument | Failure],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> None:
        """Parse one document into this result: whatever goes wrong costs only that document."""
        try:
            outcome = parse(*args, **kwargs)
        except Exception as exc:  # any parser bug or input it chokes on, RecursionError included
            outcome = parse_failure(location, exc)
        if isinstance(outcome, Skipped):
            self.skipped.append(outcome)
        elif isinstance(outcome, Failure):
            self.failures.append(outcome)
        else:
            self.documents.append(outcome)


def parse_failure(location: str, exc: Exception) -> Failure:
    """An unexpected exception while reading one document, as that document's failure."""
    log.warning("could not parse %s", location, exc_info=exc)
    message = " ".join(str(exc).split())[:200]
    return Failure(location, f"could not parse ({type(exc).__name__}: {message})")
