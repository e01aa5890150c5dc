"""Turning fetched HTML into text: main-content extraction, HTML to Markdown, bot-check detection."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import lxml.html
from lxml import etree

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


_BLOCKS = {
    "p",
    "div",
    "section",
    "article",
    "header",
    "footer",
    "figure",
    "figcaption",
    "table",
    "tr",
}
_SKIP = {"script", "style", "noscript", "template", "svg", "iframe", "form", "nav", "button"}


def html_to_markdown(html: str) -> str:
    """Markdown from an HTML body or fragment: headings, paragraphs, lists, quotes and code survive.

    Exports carry clean, known markup, so a small converter keeps every paragraph, where a
    main-content extractor might drop short posts as boilerplate.
    """
    if not html.strip():
        return ""
    try:
        root = lxml.html.fragment_fromstring(html, create_parent="div")
    except (etree.ParserError, ValueError):
        return ""
    out: list[str] = []
    _render(root, out, list_depth=0)
    text = "".join(out)
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _inline(el: etree._Element) -> str:
    return re.sub(r"\s+", " ", el.text_content()).strip()


def _render(el: etree._Element, out: list[str], list_depth: int) -> None:
    tag = el.tag if isinstance(el.tag, str) else ""
    if tag in _SKIP:
        return
    if re.fullmatch(r"h[1-6]", tag):
        out.append(f"\n\n{'#' * int(tag[1])} {_inline(el)}\n\n")
    elif tag == "pre":
        out.append(f"\n\n```\n{el.text_content().strip(chr(10))}\n```\n\n")
    elif tag == "blockquote":
        inner = html_to_markdown(lxml.html.tostring(el, encoding="unicode"))
        out.append(
            "\n\n" + "\n".join(f"> {line}" if line else ">" for line in inner.splitlines()) + "\n\n"
        )
    elif tag in ("ul", "ol"):
        out.append("\n")
        for i, item in enumerate(el.findall("li"), start=1):
            bullet = f"{i}." if tag == "ol" else "-"
            out.append(f"{'  ' * list_depth}{bullet} {_inline(item)}\n")
        out.append("\n")
    elif tag == "br":
        out.append("\n")
    elif tag in ("p", "li") or (tag in _BLOCKS and not _has_block_child(el)):
        text = _inline(el)
        if text:
            out.append(f"\n\n{text}\n\n")
    else:
        if el.text and el.text.strip():
            out.append(el.text)
        for child in el:
            _render(child, out, list_depth)
            if child.tail and child.tail.strip():
                out.append(child.tail)


def _has_block_child(el: etree._Element) -> bool:
    return any(
        isinstance(c.tag, str)
        and (
            c.tag in _BLOCKS
            or c.tag in ("ul", "ol", "pre", "blockquote")
            or re.fullmatch(r"h[1-6]", c.tag)
        )
        for c in el.iter()
        if c is not el
    )
