"""Citations an answer may make: only the numbered passages it was given, never a made-up URL.

The prompt numbers the retrieved passages and asks for `[n]` citations only. A small model still
invents citations and URLs, so every answer goes through `CitationFilter` before it leaves the API:
`[n]` naming a passage becomes a link to that passage's source, any other `[n]` is dropped, and a
URL that is not one of the retrieved sources is dropped. It works on a stream of text deltas, so a
streamed answer is cleaned as it goes, holding back only an unfinished `[..` or URL.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

CITATION = re.compile(r"\[(\d{1,3})\](?!\()")
URL = re.compile(r"https?://[^\s)\]>\"']+")
_OPEN = re.compile(r"\[\d{0,3}$|https?:?/{0,2}[^\s)\]>\"']*$|h(?:t{1,2}p?s?)?$")


@dataclass
class CitationFilter:
    """Feed it an answer's text (whole or as deltas); read `cited` after `flush`."""

    source_urls: Sequence[str]
    cited: list[int] = field(default_factory=list)  # 1-based passage numbers, first use order
    dropped: list[str] = field(default_factory=list)
    _pending: str = ""

    def feed(self, delta: str) -> str:
        """The cleaned text that can be emitted now; an unfinished citation or URL waits."""
        text = self._pending + delta
        hold = _OPEN.search(text)
        self._pending = text[hold.start() :] if hold else ""
        return self._clean(text[: hold.start()] if hold else text)

    def flush(self) -> str:
        text, self._pending = self._pending, ""
        return self._clean(text)

    def _clean(self, text: str) -> str:
        text = CITATION.sub(self._citation, text)
        return URL.sub(self._url, text)

    def _citation(self, match: re.Match[str]) -> str:
        number = int(match.group(1))
        if 1 <= number <= len(self.source_urls):
            if number not in self.cited:
                self.cited.append(number)
            return f"[{number}]({self.source_urls[number - 1]})"
        self.dropped.append(match.group(0))
        return ""

    def _url(self, match: re.Match[str]) -> str:
        url = match.group(0).rstrip(".,;:!?")
        if url in self.source_urls:
            return match.group(0)
        self.dropped.append(url)
        return match.group(0)[len(url) :]


def resolve(answer: str, source_urls: Sequence[str]) -> tuple[str, CitationFilter]:
    """The whole answer, cleaned, and what it cited and dropped."""
    citations = CitationFilter(source_urls)
    text = citations.feed(answer) + citations.flush()
    return text, citations
