"""Cleaning that keeps meaning: normalised text with its code, URLs and Markdown intact.

The reference pipeline deletes every character but letters, digits and `.,!?`, which destroys code,
links and structure. Here prose is Unicode- and whitespace-normalised and stripped of boilerplate
(navigation, share buttons, footers); fenced code is kept verbatim apart from line endings and
trailing spaces; repositories lose only files that are not text (binaries, minified bundles).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from twin_platform.documents import Category

CLEANER_VERSION = "1"
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
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")

# Lines that are page furniture, not writing. Matched on the whole (short) line, case-insensitive.
_BOILERPLATE = re.compile(
    r"^(?:"
    r"share( this( post| article)?)?( on (twitter|x|facebook|linkedin|reddit|email|whatsapp))?"
    r"|(click to )?(tweet|share|email|print)( this)?"
    r"|(subscribe|sign up|sign in|log in|login|register)( now| for free| to .{0,40})?"
    r"|follow( me| us)?( on .{0,30})?"
    r"|skip to (main )?content|toggle navigation|(main )?menu|back to top|scroll to top"
    r"|(©|\(c\)|copyright).{0,80}|all rights reserved\.?|privacy policy|terms( of (service|use))?"
    r"|(we use )?cookies?.{0,80}|accept( all)?( cookies)?"
    r"|related (posts|articles|stories)|you (may|might) also like|more from .{0,40}|recommended( for you)?"
    r"|read more|continue reading|see more|…see more|\.\.\.see more|see translation|show more"
    r"|leave a (comment|reply)|\d+ (comments?|responses?|claps?|likes?|reactions?)"
    r"|member-only story|\d+ min read|listen|like|comment|repost|send|reply|--"
    r")[.!:]?$",
    re.I,
)
_BOILERPLATE_MAX_CHARS = 100

# Repository files that carry no writing worth retrieving.
_SKIPPED_FILE = re.compile(
    r"(\.lock|\.min\.(js|css)|\.map|\.svg|package-lock\.json|\.ipynb_checkpoints.*)$", re.I
)
_FILE_HEADING = re.compile(r"^#{1,6}\s+`?(?P<path>[^\s`]+)`?\s*$")


@dataclass(frozen=True)
class CleanedText:
    content: str
    status: Status
    language: str | None
    removed_lines: int = 0


def clean(raw: object, category: Category | str, max_chars: int = 2_000_000) -> CleanedText:
    """Clean one document's content for its category. Never raises on bad input: it reports it."""
    text = _as_text(raw)
    if text is None or _looks_binary(text):
        return CleanedText("", "non_text", None)
    category = Category(category)
    truncated = len(text) > max_chars
    if truncated:
        text = text[:max_chars]
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if category != Category.REPOSITORIES and _HTML_HINT.search(text[:5000]):
        text = html_to_markdown(text)
    if category == Category.REPOSITORIES:
        text, removed = _clean_repository(text)
    else:
        text, removed = _clean_markdown(text)
    text = text.strip("\n")
    if not text.strip():
        return CleanedText("", "empty", None, removed)
    return CleanedText(text, "truncated" if truncated else "ok", detect_language(text), removed)


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


def html_to_markdown(html: str) -> str:
    """Main content of an HTML page as Markdown (boilerplate dropped by trafilatura)."""
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


def _clean_prose(text: str) -> tuple[str, int]:
    text = unicodedata.normalize("NFKC", text)
    text = _CONTROL.sub("", _INVISIBLE.sub("", text)).replace("\t", "    ")
    kept: list[str] = []
    removed = 0
    for line in text.split("\n"):
        line = _SPACES.sub(" ", line.rstrip())
        if _is_boilerplate(line):
            removed += 1
            continue
        kept.append(line)
    return _BLANK_LINES.sub("\n\n", "\n".join(kept)), removed


def _is_boilerplate(line: str) -> bool:
    stripped = line.strip().strip("*_#>|-• ").strip()
    if not stripped or len(stripped) > _BOILERPLATE_MAX_CHARS:
        return False
    if _BOILERPLATE.match(stripped) or _BOILERPLATE.match(_MD_LINK.sub(r"\1", stripped).strip()):
        return True
    links = _MD_LINK.findall(stripped)
    # A line of nothing but three or more short links is a navigation bar.
    return len(links) >= 3 and not _MD_LINK.sub("", stripped).strip(" |·•-/")


def _clean_markdown(text: str) -> tuple[str, int]:
    out: list[str] = []
    removed = 0
    for is_code, piece in split_fences(text):
        if is_code:
            out.append(_clean_code(piece))
        else:
            cleaned, n = _clean_prose(piece)
            out.append(cleaned)
            removed += n
    return "".join(out), removed


def _clean_repository(text: str) -> tuple[str, int]:
    """Keep every text file's fenced block verbatim; drop lock files, minified and binary files."""
    out: list[str] = []
    removed = 0
    path: str | None = None
    for is_code, piece in split_fences(text):
        if not is_code:
            headings = [
                m.group("path") for line in piece.split("\n") if (m := _FILE_HEADING.match(line))
            ]
            path = headings[-1] if headings else path
            cleaned, n = _clean_prose(piece)
            out.append(cleaned)
            removed += n
            continue
        body = piece.split("\n", 1)[1] if "\n" in piece else ""
        if (path and _SKIPPED_FILE.search(path)) or _looks_binary(body) or _is_minified(body):
            removed += 1
            if out and path and out[-1].rstrip().endswith(path):
                out[-1] = out[-1].rstrip()[: -len(path)].rstrip("# `\n") + "\n"
            continue
        out.append(_clean_code(piece))
    return "".join(out), removed


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
