"""Cleaning that keeps meaning: the author's own words, normalised, with code, URLs and Markdown.

The reference pipeline deletes every character but letters, digits and `.,!?`, which destroys code,
links and structure. Here prose is Unicode- and whitespace-normalised; platform chrome (share
widgets, subscribe prompts, bylines, navigation, captions, like counts) is dropped by
`boilerplate` from known widgets and from what recurs across the author's documents on one
platform; the title block is kept once; hard-wrapped lines are re-flowed into paragraphs (code,
lists, tables and quotes untouched); secrets and personal data are replaced by placeholders (`pii`)
so that no chunk, vector or snippet holds them. Fenced and indented code is kept verbatim apart
from line endings and trailing spaces; repositories lose only files that are not text.
"""

from __future__ import annotations

import re
import statistics
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

from twin_platform.documents import Category
from twin_platform.features.boilerplate import (
    Profile,
    Unit,
    build_profile,
    document_keys,
    drop_chrome,
    is_widget_line,
    units_of,
)
from twin_platform.features.pii import scrub_pii

CLEANER_VERSION = "2"
"""Bump when cleaning changes: every document is cleaned again on the next run."""

Status = Literal["ok", "truncated", "empty", "non_text"]

_FENCE = re.compile(
    r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})[^\n]*\n.*?^(?P=indent)(?P=fence)[ \t]*$",
    re.M | re.S,
)
_INVISIBLE = re.compile(r"[\u00ad\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064\ufeff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SPACES = re.compile(r"(?<=\S)[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]{2,}")
_BLANK_LINES = re.compile(r"\n{3,}")
_HTML_HINT = re.compile(r"<(html|body|div|article|p|br|span|head|nav|footer)\b[^>]*>", re.I)

# Text scraped with get_text() (the reference's Medium crawler): a page on one line, sentences glued.
_GLUED = re.compile(r"(?<=[a-z0-9%)\]”’][.!?])(?=[A-Z“‘→🔗])")
_SPACED = re.compile(r"(?<=[a-z0-9%)\]”’][.!?]) (?=[A-Z])")
_MEDIUM_HEAD = re.compile(r"^.{0,300}?Open in app(?:Sign up|Sign in|Write|Top highlight)*")
_MEDIUM_BYLINE = re.compile(
    r"[A-Z][\w'’-]*(?: [A-Z][\w'’-]*){0,3}·Follow(?:Published in.{1,80}?·)?\d+ min read·"
    r"[A-Z][a-z]{2} \d{1,2}, \d{4}[\d.,K]*(?:Listen)?(?:Share)?"
)
_MEDIUM_FOOT = re.compile(
    r"Sign up to discover human stories|Recommended from Medium|\d*FollowWritten by "
)
_HARD_BREAK = re.compile(r"( {2,}|\\)$")
_WRAP_HYPHEN = re.compile(r"[A-Za-z]-$")

# Repository files that carry no writing worth retrieving.
_SKIPPED_FILE = re.compile(
    r"(\.lock|\.min\.(js|css)|\.map|\.svg|package-lock\.json|\.ipynb_checkpoints.*)$", re.I
)
_FILE_HEADING = re.compile(r"^#{1,6}\s+`?(?P<path>[^\s`]+)`?\s*$")


@dataclass(frozen=True)
class DocumentContext:
    """What cleaning knows beyond the text: the title block, and the chrome of the author's
    documents on the same platform (`corpus_profile`)."""

    title: str | None = None
    subtitle: str | None = None
    profile: Profile = field(default_factory=Profile)
    document: str | None = None  # its id in the profile (the URL): the owner keeps recurring prose


@dataclass(frozen=True)
class CleanedText:
    content: str
    status: Status
    language: str | None
    removed_lines: int = 0
    dropped: tuple[str, ...] = ()  # the chrome lines removed, for reports
    scrubbed: dict[str, int] = field(default_factory=dict)  # secrets and PII replaced, by kind


def clean(
    raw: object,
    category: Category | str,
    max_chars: int = 2_000_000,
    context: DocumentContext | None = None,
) -> CleanedText:
    """Clean one document's content for its category. Never raises on bad input: it reports it."""
    text = _as_text(raw)
    if text is None or _looks_binary(text):
        return CleanedText("", "non_text", None)
    category = Category(category)
    context = context or DocumentContext()
    truncated = len(text) > max_chars
    if truncated:
        text = text[:max_chars]
    if category == Category.REPOSITORIES:
        text, dropped = _clean_repository(text.replace("\r\n", "\n").replace("\r", "\n"))
    else:
        text = prepare(text, context.title, context.subtitle)
        text, dropped = _clean_markdown(text, context)
    text, scrubbed = scrub_pii(text.strip("\n"))
    if not text.strip():
        return CleanedText("", "empty", None, len(dropped), tuple(dropped))
    status: Status = "truncated" if truncated else "ok"
    language = detect_language(text)
    return CleanedText(text, status, language, len(dropped), tuple(dropped), dict(scrubbed))


def corpus_profile(contents: Iterable[tuple[str, object]], share: float | None = None) -> Profile:
    """The chrome of one author's documents on one platform, from (URL, content) pairs: the
    lines many of them repeat."""
    keys: dict[str, frozenset[str]] = {}
    for url, raw in contents:
        text = _as_text(raw)
        if text is not None and not _looks_binary(text):
            keys[url] = document_keys(prepare(text).split("\n"))
    return build_profile(keys) if share is None else build_profile(keys, share)


def prepare(text: str, title: str | None = None, subtitle: str | None = None) -> str:
    """The text both the corpus profile and cleaning read: Unix newlines, HTML as Markdown, glued
    page text cut into paragraphs."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _HTML_HINT.search(text[:5000]):
        text = page_to_markdown(text)
    return "\n".join(
        _unglue(line, title, subtitle) if _is_glued(line) else line for line in text.split("\n")
    )


def _as_text(raw: object) -> str | None:
    """Text from str or bytes; invalid UTF-8 and lone surrogates become U+FFFD, NULs are dropped."""
    if isinstance(raw, bytes | bytearray):
        raw = bytes(raw).decode("utf-8", errors="replace")
    if not isinstance(raw, str):
        return None
    return _SURROGATE.sub("\ufffd", raw).replace("\x00", "")


def _looks_binary(text: str, sample: int = 20_000) -> bool:
    """Mostly replacement or control characters, or one huge unbroken token (base64, minified)."""
    head = text[:sample]
    if not head:
        return False
    bad = head.count("\ufffd") + len(_CONTROL.findall(head))
    if bad / len(head) > 0.1:
        return True
    return len(head) >= 2000 and max(len(w) for w in head.split()) > 0.9 * len(head)


def page_to_markdown(html: str) -> str:
    """Main content of a whole scraped HTML page as Markdown, navigation and footers dropped by
    trafilatura. (Export bodies, which are all the author's, go through
    `collection.html.html_to_markdown`, which keeps every element.)"""
    import trafilatura  # lazy: only HTML inputs pay for it

    extracted = trafilatura.extract(
        html,
        output_format="markdown",
        include_links=True,
        include_formatting=True,
        include_tables=True,
        include_comments=False,
        favor_recall=True,
    )
    if extracted:
        return extracted
    return re.sub(r"<[^>]+>", " ", html)


def split_fences(text: str) -> list[tuple[bool, str]]:
    """(is_code, text) pieces in order; unclosed fences count as prose."""
    pieces: list[tuple[bool, str]] = []
    position = 0
    for match in _FENCE.finditer(text):
        if match.start() > position:
            pieces.append((False, text[position : match.start()]))
        pieces.append((True, match.group(0)))
        position = match.end()
    if position < len(text):
        pieces.append((False, text[position:]))
    return pieces


def _clean_code(code: str) -> str:
    code = unicodedata.normalize("NFC", code)
    code = _INVISIBLE.sub("", code.replace("\ufeff", ""))
    return "\n".join(line.rstrip() for line in code.split("\n"))


def _normalise(line: str) -> str:
    """A prose line: NFKC (𝗯𝗼𝗹𝗱 math letters become letters), no invisible or control characters,
    single spaces inside; trailing spaces are kept for the hard-break test."""
    line = unicodedata.normalize("NFKC", line)
    line = _CONTROL.sub("", _INVISIBLE.sub("", line)).replace("\t", "    ")
    body = line.rstrip()
    return _SPACES.sub(" ", body) + line[len(body) :][:2]


def _clean_markdown(text: str, context: DocumentContext) -> tuple[str, list[str]]:
    """Chrome dropped, the title block kept once, paragraphs re-flowed; returns the dropped lines."""
    units = units_of(text.split("\n"))
    for unit in units:
        if unit.kind != "code":
            unit.lines = [_normalise(line) for line in unit.lines]
    width = _wrap_width(units)
    if width is not None:
        _join_wrapped_headings(units, width)
    titles = [t for t in (context.title, context.subtitle) if t]
    dropped = drop_chrome(units, context.profile, titles, context.document)
    out: list[str] = []
    for unit in units:
        if unit.kind == "code":
            out.append(_clean_code("\n".join(unit.kept)))
        elif unit.kept:
            out.append("\n".join(_reflow(unit, width)))
    return _BLANK_LINES.sub("\n\n", "\n".join(out)), dropped


def _wrap_width(units: list[Unit]) -> int | None:
    """The width prose was hard-wrapped at (html2text: 78), or None when it was not: most
    non-final lines of paragraphs are then nearly as long as the longest ones."""
    lengths = [
        len(line.rstrip())
        for unit in units
        if unit.kind == "prose"
        for line in unit.lines[:-1]
        if not _HARD_BREAK.search(line)
    ]
    if len(lengths) < 3:
        return None
    width = statistics.quantiles(lengths, n=10)[-1]  # the 90th percentile: a few long URLs aside
    if width > 160 or sum(n >= 0.65 * width for n in lengths) < 0.7 * len(lengths):
        return None
    return int(width)


def _join_wrapped_headings(units: list[Unit], width: int) -> None:
    """html2text wraps long headings too: the lines right under one (no blank between) end it,
    as long as each line before was long enough to have been wrapped."""
    for unit, following in pairwise(units):
        if unit.kind != "heading" or following.kind != "prose":
            continue
        segment = unit.lines[0]
        for index, line in enumerate(following.lines):
            if len(segment.rstrip()) < 0.6 * width:
                break
            glue = "" if _WRAP_HYPHEN.search(unit.lines[0].rstrip()) else " "
            unit.lines[0] = f"{unit.lines[0].rstrip()}{glue}{line.strip()}"
            following.lines[index], segment = "", line


def _reflow(unit: Unit, width: int | None) -> list[str]:
    """A paragraph or list item of a hard-wrapped document joined into one line (Markdown reads a
    single newline as a space); hard breaks (two trailing spaces, a backslash) stay breaks."""
    if width is None or unit.kind not in ("prose", "list"):
        return [line.rstrip() for line in unit.kept]
    joined: list[str] = []
    for line in unit.kept:
        if joined and not _HARD_BREAK.search(joined[-1]):
            previous = joined[-1].rstrip()
            glue = "" if _WRAP_HYPHEN.search(previous) and line[:1].isalpha() else " "
            joined[-1] = previous + glue + line.lstrip()  # its trailing spaces: a hard break
        else:
            joined.append(line)
    return [line.rstrip() for line in joined]


def _clean_repository(text: str) -> tuple[str, list[str]]:
    """Keep every text file's fenced block verbatim; drop lock files, minified and binary files."""
    out: list[str] = []
    dropped: list[str] = []
    path: str | None = None
    for is_code, piece in split_fences(text):
        if not is_code:
            headings = [
                m.group("path") for line in piece.split("\n") if (m := _FILE_HEADING.match(line))
            ]
            path = headings[-1] if headings else path
            lines = [_normalise(line).rstrip() for line in piece.split("\n")]
            dropped += [line for line in lines if is_widget_line(line)]
            out.append(
                _BLANK_LINES.sub("\n\n", "\n".join(x for x in lines if not is_widget_line(x)))
            )
            continue
        body = piece.split("\n", 1)[1] if "\n" in piece else ""
        if (path and _SKIPPED_FILE.search(path)) or _looks_binary(body) or _is_minified(body):
            dropped.append(f"{path or 'file'} (not text)")
            if out and path and out[-1].rstrip().endswith(path):
                out[-1] = out[-1].rstrip()[: -len(path)].rstrip("# `\n") + "\n"
            continue
        out.append(_clean_code(piece))
    return "".join(out), dropped


def _is_glued(line: str) -> bool:
    """A whole page on one line: Medium's header and byline, or sentences mostly glued."""
    if len(line) < 500:
        return False
    if _MEDIUM_HEAD.match(line) and _MEDIUM_BYLINE.search(line):
        return True
    glued = len(_GLUED.findall(line))
    return glued >= 5 and glued >= len(_SPACED.findall(line))


def _unglue(line: str, title: str | None, subtitle: str | None) -> str:
    """Medium's header, byline and footer cut away; title, subtitle and sentences on their own."""
    line = _MEDIUM_HEAD.sub("", line, count=1)
    line = _MEDIUM_BYLINE.sub("\n\n", line, count=1)
    foot = _MEDIUM_FOOT.search(line, len(line) // 3)
    line = line[: foot.start()] if foot else line
    for text, prefix in ((title, "# "), (subtitle, "")):
        at = line.find(text, 0, 1500) if text else -1
        if text and at >= 0:
            line = f"{line[:at]}\n\n{prefix}{text}\n\n{line[at + len(text) :]}"
    return _GLUED.sub("\n\n", line)


def _is_minified(code: str) -> bool:
    lines = [line for line in code.split("\n") if line.strip()]
    return bool(lines) and sum(len(line) for line in lines) / len(lines) > 400


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_STOPWORDS: dict[str, frozenset[str]] = {
    "en": _words("the and of to is in that it for with as are this was on be not you"),
    "fr": _words("le la les et des est un une que dans pour pas qui sur au du avec"),
    "de": _words("der die das und ist nicht ein eine zu mit den von sich auf für dem"),
    "es": _words("el la los las y es que en un una por con para del se no lo"),
    "it": _words("il lo la gli le e che di un una per con non sono del della"),
    "pt": _words("o a os as e que de um uma para com não em do da se"),
    "nl": _words("de het een en is van dat niet op te met voor zijn er"),
}
_SCRIPTS = (
    ("CJK", "zh"),
    ("HIRAGANA", "ja"),
    ("KATAKANA", "ja"),
    ("HANGUL", "ko"),
    ("CYRILLIC", "und-Cyrl"),
    ("ARABIC", "ar"),
    ("HEBREW", "he"),
    ("GREEK", "el"),
    ("DEVANAGARI", "hi"),
    ("THAI", "th"),
)
_WORD = re.compile(r"[^\W\d_]+")


def detect_language(text: str, sample: int = 5000) -> str:
    """A cheap guess: stop-word votes for Latin-script languages, the script for the others."""
    head = _FENCE.sub(" ", text[:sample]).lower()
    letters = [ch for ch in head if ch.isalpha()]
    if not letters:
        return "und"
    non_latin: dict[str, int] = {}
    for ch in letters[:2000]:
        if ch.isascii():
            continue
        name = unicodedata.name(ch, "")
        for prefix, code in _SCRIPTS:
            if name.startswith(prefix) or f" {prefix}" in name:
                non_latin[code] = non_latin.get(code, 0) + 1
                break
    if non_latin and max(non_latin.values()) > 0.3 * min(len(letters), 2000):
        return max(non_latin, key=non_latin.__getitem__)
    words = _WORD.findall(head)
    votes = {lang: sum(w in stops for w in words) for lang, stops in _STOPWORDS.items()}
    best = max(votes, key=votes.__getitem__)
    return best if votes[best] >= max(2, 0.05 * len(words)) else "und"
