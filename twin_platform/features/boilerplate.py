"""Platform chrome around an author's words: known widgets, and lines the author's pages all repeat.

Scraped pages carry the platform's furniture: share widgets, subscribe prompts, bylines, navigation,
captions like "Image by author", like and subscriber counts. Two detectors find it:
- known widgets of Substack, Medium, LinkedIn and static-site generators (Quarto, Hugo, Jekyll), by
  their exact wording (`WIDGETS`; single words such as "Note" or "Email" only beside other chrome);
- corpus recurrence (`Profile`): a line found in at least `threshold` documents of one author and
  platform is that site's chrome, whatever its words. Near-duplicate documents (the same article
  under two URLs) count once, so a duplicated article never marks its own text as chrome. A
  recurring line of prose (a series intro, a sign-off paragraph) is the author's writing repeated:
  one document keeps it (the first by URL), the others drop it, so no sentence leaves the corpus.
A document is cut into units (a paragraph, a list item, a heading, a quote, a table). A unit goes
only when every line of it is chrome, so the author's paragraph that contains a common line stays
whole; a heading goes only when what it introduces went too ("## Conclusion" before the author's
conclusion stays). Code (fenced or indented) is never touched.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

SHARE = 0.2
"""A line is chrome when it recurs in this share of an author's documents on one platform ..."""
MIN_DOCUMENTS = 2
"""... and in at least this many (one document alone has no corpus to compare with)."""
NEAR_DUPLICATE = 0.8
"""Documents whose line sets have this Jaccard similarity count as one (datasketch MinHash LSH)."""
PROSE_WORDS = 8
"""A recurring line of at least this many words is prose: kept once in the corpus."""

_WIDGET_PHRASES = (
    # Substack
    r"subscribe ?sign in|share this (post|article)|copy link|discussion about this post|restacks?"
    r"|no posts|ready for more\?|start writing ?get the app|substack is the home for great culture"
    r"|privacy ∙ terms ∙ collection notice|previous ?next|this site requires javascript.{0,80}"
    r"|(please turn on javascript or )?unblock scripts|upgrade to paid|get \d+% off.{0,60}"
    r"|thanks for reading.{0,80}(subscribe|support).{0,80}|[\d.,]+k? (paid )?subscribers"
    r"|type your email.{0,20}|already have an account\? sign in|pledge your support"
    r"|.{1,80} is a reader-supported publication\..{0,160}"
    # Medium
    r"|open in app|sign up|sign in|top highlight|member-only story|\d+ min read"
    r"|published in [\w .'&-]{1,60}|written by [\w .'-]{1,40}|[\d.,]+k? followers?( · .{0,60})?"
    r"|more from [\w .'&-]{1,80}|recommended from medium"
    r"|see (all|more) (from [\w .'&-]{1,60}|recommendations)"
    r"|to make medium work, we log user data.{0,200}|text to speech|responses? \(\d+\)"
    r"|(help ?)?status ?about ?careers ?press.{0,60}"
    # LinkedIn
    r"|…? ?see more|see translation|report this (post|article)|sign in to view more content"
    r"|join now|agree & join linkedin|\d+ (reactions?|reposts?)|like ?comment ?repost ?send"
    # Quarto, Hugo, Jekyll and other site generators
    r"|on this page|back to top|edit this page|report an issue|view source|subscribe via rss"
    r"|powered by (hugo|jekyll|quarto|ghost|wordpress).{0,60}|theme by .{1,60}"
    r"|(posted|published|updated) on [\w ,.]{1,30}|(posted|published) by [\w .'-]{1,40}"
    r"|reading time:? [\w ]{1,20}|(previous|next) (post|article)"
    r"|(image|photo|figure|illustration|picture)( \d+)?( (generated|created|made) (with|using|by)"
    r" [\w .-]{1,30})?( by (the )?author)\.?"
)
WIDGETS = re.compile(rf"(?:{_WIDGET_PHRASES})[.!:]?", re.I)
"""Whole lines that are always a platform's widget, never writing."""
CONTEXTUAL = re.compile(
    r"(?:note|other|top|latest|discussions|email|e-mail|comments?|share|facebook|twitter|x"
    r"|linkedin|reddit|whatsapp|hacker news|print|author|authors|published|modified|categories"
    r"|tags|listen|follow|following|subscribe|([\w-]+\.)+[a-z]{2,}|about|help|status|careers"
    r"|press|blog|privacy|terms|teams|home|menu|search"
    r"|previous|next|write|like|likes|comment|repost|send|reply|share on .{1,20}"
    r"|[\d.,]+ ?[km]?( (likes?|comments?|claps?|shares?|views?|reads?|restacks?))?"
    r"|(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.? \d{1,2},? \d{4}"
    r"|\d{1,2} (jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]* \d{4}|\d{4}-\d{2}-\d{2}"
    r"|updated .{1,30}|\d+ (min|minute)s? read"
    r"|sections|contents|table of contents|in this (article|post)|on this page)[.!:]?",
    re.I,
)
"""Short lines that are chrome only beside other chrome (a date after a byline, "Note" in a
share widget), since the author may write them too."""

# Generic page furniture of any site, as a whole (short) line.
_GENERIC = re.compile(
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
_GENERIC_MAX_CHARS = 100
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_DECORATION = re.compile(r"[*_#>`~|\\\[\]]+")
_LIST = re.compile(r"^\s*(?:[-*+•]|\d+\\?[.)])\s+")
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:\s|$)")
_HR = re.compile(r"^ {0,3}([-*_])(?:\s*\1){2,}\s*$")
_FENCE_LINE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_WORD = re.compile(r"\w")
_MARKS = frozenset("*_#>|-•~=`")
_SENTENCE_END = re.compile(r"[.!?:)\]”\"'](\s*)$|^\s*$")


def is_widget_line(line: str) -> bool:
    """A line that is a known widget of some platform or site, never the author's writing."""
    stripped = line.strip().strip("*_#>|-• ").strip()
    if not stripped or len(stripped) > 300:
        return False
    text = _MD_LINK.sub(r"\1", stripped).strip()
    if WIDGETS.fullmatch(line_key(stripped)):
        return True
    if len(stripped) <= _GENERIC_MAX_CHARS and (_GENERIC.match(stripped) or _GENERIC.match(text)):
        return True
    # A line of nothing but three or more short links is a navigation bar.
    links = _MD_LINK.findall(stripped)
    return len(links) >= 3 and not _MD_LINK.sub("", stripped).strip(" |·•-/")


def line_key(line: str) -> str:
    """A line as compared across documents: link texts only, no Markdown marks, case-folded."""
    text = unicodedata.normalize("NFKC", line)
    text = _DECORATION.sub(" ", _HEADING.sub("", _MD_LINK.sub(r"\1", text)))
    return " ".join(_LIST.sub("", text).split()).casefold()


@dataclass(frozen=True)
class Profile:
    """The lines that are chrome in one author's documents on one platform, and for recurring
    prose the one document that keeps it."""

    documents: int = 0
    threshold: int = 0
    lines: frozenset[str] = frozenset()
    owners: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    counts: dict[str, int] = field(default_factory=dict, compare=False, hash=False)

    @property
    def fingerprint(self) -> str:
        """Changes exactly when what is dropped does: documents cleaned under another profile are
        cleaned again, so every document of a platform sees the same one."""
        digest = hashlib.sha256()
        for key in sorted(self.lines):
            digest.update(f"{key}\0{self.owners.get(key, '')}\n".encode())
        return digest.hexdigest()[:12]

    def is_chrome(self, key: str, document: str | None) -> bool:
        """Whether the line `key` is chrome in `document` (its owner keeps recurring prose)."""
        return key in self.lines and (document is None or self.owners.get(key) != document)

    def top(self, limit: int = 50) -> list[tuple[str, int]]:
        """The most frequent chrome lines, for reports."""
        return sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]


def build_profile(
    line_sets: Mapping[str, frozenset[str]],
    share: float = SHARE,
    min_documents: int = MIN_DOCUMENTS,
) -> Profile:
    """Lines recurring in `share` of the documents (at least `min_documents`), from each
    document's line keys by its id. Deterministic: the same sets give the same profile."""
    groups = _distinct(line_sets)
    if len(groups) < min_documents:
        return Profile(documents=len(groups))
    threshold = max(min_documents, math.ceil(share * len(groups)))
    counts: Counter[str] = Counter()
    owners: dict[str, str] = {}
    for owner, keys in groups:
        counts.update(keys)
        for key in keys:
            if len(key.split()) >= PROSE_WORDS:
                owners[key] = min(owners.get(key, owner), owner)
    recurring = {key: n for key, n in counts.items() if n >= threshold}
    owners = {key: owner for key, owner in owners.items() if key in recurring}
    return Profile(len(groups), threshold, frozenset(recurring), owners, recurring)


def _distinct(line_sets: Mapping[str, frozenset[str]]) -> list[tuple[str, frozenset[str]]]:
    """One (first id, union of line sets) per group of near-duplicate documents, in id order."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=NEAR_DUPLICATE, num_perm=64)
    groups: list[tuple[str, set[str]]] = []
    for document, keys in sorted(line_sets.items()):
        if not keys:
            continue
        signature = MinHash(num_perm=64, seed=1)
        signature.update_batch([key.encode() for key in keys])
        similar = [int(i) for i in lsh.query(signature)]
        if similar:
            groups[min(similar)][1].update(keys)
            continue
        lsh.insert(str(len(groups)), signature)
        groups.append((document, set(keys)))
    return [(document, frozenset(keys)) for document, keys in groups]


def document_keys(lines: Iterable[str]) -> frozenset[str]:
    """The keys of a document's prose lines that carry words (code lines excluded)."""
    return frozenset(
        key
        for line, is_code in mark_code(list(lines))
        if not is_code and (key := line_key(line)) and _WORD.search(key)
    )


def mark_code(lines: list[str]) -> list[tuple[str, bool]]:
    """Each line with whether it is code: inside a fence, or an indented block after a blank."""
    marked: list[tuple[str, bool]] = []
    fence: str | None = None
    previous_blank_or_code = True
    for line in lines:
        opener = _FENCE_LINE.match(line)
        if fence is not None:
            marked.append((line, True))
            if opener and opener.group(1)[0] == fence[0] and len(opener.group(1)) >= len(fence):
                fence = None
            continue
        if opener and line.count(opener.group(1)[0]) >= 3:
            fence = opener.group(1)
            marked.append((line, True))
            continue
        indented = line.startswith(("    ", "\t")) and line.strip() and not _LIST.match(line)
        is_code = bool(indented and previous_blank_or_code)
        marked.append((line, is_code))
        previous_blank_or_code = not line.strip() or is_code
    return marked


# -- dropping chrome from one document -----------------------------------------------------------
@dataclass
class Unit:
    """Consecutive lines that stand or fall together."""

    kind: str  # heading, list, quote, table, hr, prose, code
    lines: list[str]
    level: int = 7  # heading level; 7 for anything that is not a heading
    dropped: bool = False
    cut: set[int] = field(default_factory=set)  # widget lines dropped from a kept unit

    @property
    def keys(self) -> list[str]:
        return [line_key(line) for line in self.lines]

    @property
    def kept(self) -> list[str]:
        return [] if self.dropped else [x for i, x in enumerate(self.lines) if i not in self.cut]


def units_of(lines: list[str]) -> list[Unit]:
    """Lines grouped into units; blank lines separate units and belong to none."""
    units: list[Unit] = []
    for line, is_code in mark_code(lines):
        kind = _kind(line, is_code)
        last = units[-1] if units else None
        if kind == "blank":
            units.append(Unit("blank", [line]))
        elif last is not None and _continues(last, kind):
            last.lines.append(line)
        else:
            heading = _HEADING.match(line)
            units.append(Unit(kind, [line], len(heading.group(1)) if heading else 7))
    return units


def _kind(line: str, is_code: bool) -> str:
    if is_code:
        return "code"
    if not line.strip():
        return "blank"
    if _HEADING.match(line):
        return "heading"
    if _HR.match(line):
        return "hr"
    if _LIST.match(line):
        return "list"
    stripped = line.lstrip()
    if stripped.startswith(">"):
        return "quote"
    if stripped.startswith("|"):
        return "table"
    return "prose"


def _continues(unit: Unit, kind: str) -> bool:
    """Whether a line of `kind` extends `unit` (a paragraph, a list item's wrapped lines, ...)."""
    if unit.kind in ("blank", "heading", "hr"):
        return False
    if unit.kind == kind:
        return kind in ("prose", "quote", "table", "code")
    return unit.kind == "list" and kind == "prose"


def drop_chrome(
    units: list[Unit], profile: Profile, titles: Sequence[str] = (), document: str | None = None
) -> list[str]:
    """Mark the chrome units of `document` as dropped; return the dropped lines (for reports)."""
    content = [u for u in units if u.kind != "blank"]  # code stays, as a neighbour, never dropped
    headings = {u.keys[0] for u in content if u.kind == "heading"}
    for unit in content:
        if unit.kind == "list" and len(unit.lines) == 1 and unit.keys[0] in headings:
            unit.dropped = True  # a table of contents entry: the heading itself stays
        elif unit.kind in ("prose", "list", "quote", "table"):
            unit.cut = _widget_lines(unit.lines)
            left = [i for i in range(len(unit.lines)) if i not in unit.cut]
            keys = [unit.keys[i] for i in left if _WORD.search(unit.keys[i])]
            if keys:
                unit.dropped = all(profile.is_chrome(k, document) for k in keys)
            else:  # no words: icons and marks go, punctuation (`"""`, `,`) only beside chrome
                unit.dropped = all(_is_decoration(unit.lines[i]) for i in left)
        elif unit.kind == "heading":
            unit.dropped = not _WORD.search(unit.keys[0])  # an empty heading: a logo or an icon
    _keep_title_once(content, titles, profile)
    while _spread(content, profile, document):  # a date beside a byline, the heading above a widget
        pass
    return [
        line
        for unit in units
        for index, line in enumerate(unit.lines)
        if unit.dropped or index in unit.cut
    ]


def _is_decoration(line: str) -> bool:
    """Markdown marks, icons, arrows and emoji only: no word and no punctuation of the text."""
    return all(c.isspace() or c in _MARKS or unicodedata.category(c)[0] == "S" for c in line)


def _widget_lines(lines: list[str]) -> set[int]:
    """Widget lines of a unit; inside a paragraph only after a finished sentence, so the last
    words of a wrapped sentence ("... then you can\nsign in.") are never taken for a widget."""
    cut: set[int] = set()
    for index, line in enumerate(lines):
        after_sentence = index == 0 or index - 1 in cut or _SENTENCE_END.search(lines[index - 1])
        if after_sentence and is_widget_line(line):
            cut.add(index)
    return cut


def _is_chrome(line: str, profile: Profile, document: str | None) -> bool:
    return profile.is_chrome(line_key(line), document) or is_widget_line(line)


def _keep_title_once(units: list[Unit], titles: Sequence[str], profile: Profile) -> None:
    """The title block repeats (page header, share widget, body): keep its best occurrence, the
    highest heading, and drop the copies. The title is the one given, which a page title may
    extend (`Title - Publication`), and the first `# ` heading that is not the site's name."""
    wanted = {key for title in titles if (key := line_key(title))}
    first = next(
        (
            u
            for u in units
            if u.kind == "heading" and u.level == 1 and u.keys[0] not in profile.lines
        ),
        None,
    )
    if first is not None and _WORD.search(first.keys[0]):
        wanted.add(first.keys[0])
    copies: dict[str, list[Unit]] = {}
    for unit in units:
        if len(unit.lines) != 1 or unit.kind not in ("heading", "prose", "list"):
            continue
        key = unit.keys[0]
        if key in wanted or (
            unit.kind == "heading"
            and len(key.split()) >= 3
            and any(w.startswith(f"{key} ") for w in wanted)
        ):
            copies.setdefault(key, []).append(unit)
    for found in copies.values():
        kept = [u for u in found if not u.dropped]
        if len(found) < 2 or not kept:
            continue
        best = min(kept, key=lambda u: u.level)
        for unit in found:
            unit.dropped = unit.dropped or unit is not best


def _spread(units: list[Unit], profile: Profile, document: str | None) -> bool:
    """One pass of chrome spreading to neighbours; whether anything changed."""
    changed = False
    for index, unit in enumerate(units):
        if unit.dropped or unit.kind == "code":
            continue
        after = units[index + 1] if index + 1 < len(units) else None
        before = units[index - 1] if index > 0 else None
        key = unit.keys[0] if len(unit.lines) == 1 else ""
        if unit.kind == "heading":
            chrome = _is_chrome(unit.lines[0], profile, document) or bool(CONTEXTUAL.fullmatch(key))
            drop = chrome and (after is None or after.dropped)
        else:
            beside = (before is not None and before.dropped) or (
                after is not None and after.dropped
            )
            wordless = not any(_WORD.search(k) for k in unit.keys)
            contextual = unit.kind == "hr" or wordless or bool(key and CONTEXTUAL.fullmatch(key))
            drop = beside and contextual
        if drop:
            unit.dropped = changed = True
    return changed
