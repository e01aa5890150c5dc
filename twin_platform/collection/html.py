"""Turning fetched HTML into text: main-content extraction, HTML to Markdown, bot-check detection."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime

from bs4 import (
    BeautifulSoup,
    MarkupResemblesLocatorWarning,
    NavigableString,
    Tag,
    XMLParsedAsHTMLWarning,
)
from markdownify import MarkdownConverter

BOT_CHECK_MARKERS = (
    "just a moment...",
    "cf-browser-verification",
    "challenge-platform",
    "enable javascript and cookies to continue",
    "attention required! | cloudflare",
    "checking your browser before accessing",
    "please verify you are a human",
)


def is_bot_check(html: str) -> bool:
    """True for anti-bot interstitials (Cloudflare "Just a moment...", captchas): never content."""
    head = html[:20_000].lower()
    return any(marker in head for marker in BOT_CHECK_MARKERS)


@dataclass(frozen=True)
class Extracted:
    title: str | None
    content: str
    published_at: datetime | None


def main_content(html: str, url: str) -> Extracted:
    """The article in a full web page, without navigation or footers (trafilatura), as Markdown."""
    import trafilatura

    text = trafilatura.extract(
        html,
        url=url,
        output_format="markdown",
        include_formatting=True,
        include_links=False,
        include_comments=False,
        favor_recall=True,
    )
    meta = trafilatura.extract_metadata(html, default_url=url)
    title = meta.title if meta is not None else None
    return Extracted(
        title=title,
        content=(text or "").strip(),
        published_at=parse_date(meta.date if meta else None),
    )


def parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# Elements that hold no writing in an export body: page chrome, widgets, icons, scripts.
_DROPPED = ("head", "script", "style", "noscript", "template", "svg", "iframe", "button", "nav")
_BLOCK = re.compile(
    r"address|article|aside|blockquote|br|dd|div|dl|dt|figcaption|figure|footer|h[1-6]|header"
    r"|hr|li|main|ol|p|pre|section|table|td|th|tr|ul"
)
_SURROGATES = re.compile("[\ud800-\udfff]")
# bs4 warns about input that looks like XML or a file name; either way it is parsed as HTML here.
warnings.filterwarnings("ignore", category=XMLParsedAsHTMLWarning)
warnings.filterwarnings("ignore", category=MarkupResemblesLocatorWarning)


class _ExportConverter(MarkdownConverter):
    def convert_br(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        """A plain newline in code (Medium writes code lines as `<pre>a<br>b</pre>`)."""
        if "_noformat" in parent_tags:
            return "\n" + text
        return super().convert_br(el, text, parent_tags)

    def convert_img(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        """`![alt](url)`; an image without alt text (a cover, a spacer) has no words to keep,
        and an inline `data:` URL would put kilobytes of base64 into the text."""
        alt = " ".join(str(el.get("alt") or "").split())
        if not alt or str(el.get("src") or "").startswith("data:"):
            return alt
        return super().convert_img(el, text, parent_tags)


_CONVERTER = _ExportConverter(
    heading_style="ATX", bullets="-", escape_asterisks=False, escape_underscores=False
)


def html_to_markdown(html: str) -> str:
    """Markdown from an HTML body or fragment: every paragraph, with headings, lists, quotes,
    links, tables, code and images (markdownify; benchmarks/results/html.md says why).

    Exports carry the author's whole text, where a main-content extractor might drop short posts
    as boilerplate. lxml builds the tree, closing implied end tags (`<li>a<li>b`) as browsers do.
    Text is kept verbatim (no backslash escapes): it is training data before it is rendered.
    """
    soup = BeautifulSoup(_SURROGATES.sub("\ufffd", html), "lxml")
    for element in soup.find_all(_DROPPED):
        element.decompose()
    try:
        markdown = _CONVERTER.convert_soup(soup)
    except RecursionError:  # nested deeper than Python's stack (hundreds of levels)
        markdown = _plain_text(soup)
    return markdown.strip()


def _plain_text(soup: BeautifulSoup) -> str:
    """Every word, a line per block, no other structure: for trees too deep to convert."""
    parts: list[str] = []
    for node in soup.descendants:  # iterative: any depth
        if isinstance(node, Tag) and _BLOCK.fullmatch(node.name):
            parts.append("\n")
        elif type(node) is NavigableString:  # not a comment, doctype or CDATA section
            previous = node.previous_sibling
            after_block = isinstance(previous, Tag) and _BLOCK.fullmatch(previous.name)
            parts.append("\n" + node if after_block else node)
    lines = (" ".join(line.split()) for line in "".join(parts).splitlines())
    return "\n\n".join(line for line in lines if line)
