"""HTML -> Markdown converters scored on documents of known structure.

    .venv/bin/python benchmarks/bench_html.py > /tmp/html.md  # the measured part of results/html.md

Each candidate converts the sample corpus (data/sample/exports/**.html), the test fixtures
(tests/fixtures/exports/**.html) and seeded generated documents (nested quotes, nested lists,
tables, code, links, images). The expected structure is read from the HTML with lxml; the score is
how much of it the Markdown keeps: headings, list items, quote lines, links, table rows, fenced code
blocks and paragraph texts. Adversarial inputs (1,000-deep nesting, unclosed tags, entities, invalid
bytes) count exceptions and lost paragraphs. `twin_platform` is the project's `html_to_markdown`.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import platform
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lxml.html

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CORPUS_GLOBS = ("data/sample/exports/**/*.html", "tests/fixtures/exports/**/*.html")
STRUCTURES = ("headings", "list_items", "quote_lines", "links", "table_rows", "code_blocks")
WORDS = ("latency", "budget", "retry", "queue", "index", "chunk", "vector", "drift", "backfill")
WORDS += ("partition", "contract", "runbook", "pager", "median", "tail", "bucket", "histogram")
WORDS += ("schema", "migration", "rollback", "canary", "replica", "shard")


# Candidates: each the library's best settings for export bodies (keep everything, no wrapping).


def convert_html2text(html: str) -> str:
    import html2text

    converter = html2text.HTML2Text()
    converter.body_width = 0
    converter.unicode_snob = True
    converter.backquote_code_style = True
    converter.ul_item_mark = "-"
    return converter.handle(html)


def convert_markdownify(html: str) -> str:
    """The library's default: a soup from Python's html.parser."""
    import markdownify

    return markdownify.markdownify(html, heading_style="ATX", bullets="-")


def convert_markdownify_lxml(html: str) -> str:
    """A soup built by lxml: HTML's implied end tags (`<li>a<li>b`) are closed as browsers do."""
    import markdownify
    from bs4 import BeautifulSoup

    converter = markdownify.MarkdownConverter(heading_style="ATX", bullets="-")
    return converter.convert_soup(BeautifulSoup(html, "lxml"))


def convert_trafilatura(html: str) -> str:
    import trafilatura

    return (
        trafilatura.extract(
            html,
            output_format="markdown",
            include_formatting=True,
            include_links=True,
            include_tables=True,
            include_images=True,
            favor_recall=True,
        )
        or ""
    )


def convert_twin_platform(html: str) -> str:
    from twin_platform.collection.html import html_to_markdown

    return html_to_markdown(html)


CANDIDATES: dict[str, Callable[[str], str]] = {
    "html2text": convert_html2text,
    "markdownify": convert_markdownify,
    "markdownify+lxml": convert_markdownify_lxml,
    "trafilatura": convert_trafilatura,
    "twin_platform": convert_twin_platform,
}


# Expected structure, read from the HTML.


def plain(text: str) -> str:
    """Text without Markdown decoration or escapes, whitespace collapsed: what a reader sees."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"\\([\\`*_{}\[\]()#+\-.!>|~])", r"\1", text)
    text = re.sub(r"[*_`]", "", text)
    return " ".join(text.split())


def own_text(el: lxml.html.HtmlElement) -> str:
    """A list item's own line: its first paragraph, or its text without nested lists."""
    first = next(iter(el), None)
    if first is not None and first.tag == "p" and not (el.text or "").strip():
        return plain(first.text_content())
    parts = [el.text or ""]
    for child in el:
        if child.tag not in ("ul", "ol"):
            block = child.tag in ("p", "div", "blockquote", "pre", "table")
            parts.append(f" {child.text_content()} " if block else child.text_content())
        parts.append(child.tail or "")
    return plain("".join(parts))


def _ancestors(el: lxml.html.HtmlElement, *tags: str) -> int:
    return sum(1 for a in el.iterancestors() if a.tag in tags)


@dataclass
class Expected:
    """What the Markdown must show; nesting is checked, not only text."""

    headings: list[str] = field(default_factory=list)
    list_items: list[tuple[str, str | None]] = field(default_factory=list)  # (text, parent item)
    quote_lines: list[tuple[str, int]] = field(default_factory=list)  # (text, quote depth)
    links: list[str] = field(default_factory=list)
    table_rows: list[tuple[list[str], bool]] = field(default_factory=list)  # (cells, in a quote)
    code_blocks: list[str] = field(default_factory=list)
    paragraphs: list[str] = field(default_factory=list)


def _list_item(exp: Expected, li: lxml.html.HtmlElement) -> None:
    if _ancestors(li, "td", "th"):  # no Markdown table holds a list: only its text must stay
        exp.paragraphs.append(own_text(li))
        return
    parent = next((a for a in li.iterancestors() if a.tag == "li"), None)
    exp.list_items.append((own_text(li), own_text(parent) if parent is not None else None))


def expected(html: str) -> Expected:
    root = lxml.html.document_fromstring(html)
    body = root.find("body") if root.find("body") is not None else root
    exp = Expected()
    for el in body.iter():
        if not isinstance(el.tag, str):
            continue
        text = plain(el.text_content())
        if re.fullmatch(r"h[1-6]", el.tag) and text:
            exp.headings.append(text)
        elif el.tag == "li" and own_text(el):
            _list_item(exp, el)
        elif el.tag == "a" and text and el.get("href", "").startswith("http"):
            exp.links.append(el.get("href"))
        elif el.tag == "tr":
            cells = [plain(c.text_content()) for c in el if c.tag in ("td", "th")]
            simple = not any(c.find(".//" + t) is not None for c in el for t in ("ul", "ol", "p"))
            if simple and any(cells):
                exp.table_rows.append(([c for c in cells if c], bool(_ancestors(el, "blockquote"))))
        elif el.tag == "pre" and el.text_content().strip():
            for br in el.iter("br"):  # Medium writes code lines as <pre>a<br>b</pre>
                br.tail = "\n" + (br.tail or "")
            exp.code_blocks.append(" ".join(el.text_content().split()))
        if el.tag == "p" and text:
            exp.paragraphs.append(text)
            if _ancestors(el, "blockquote"):
                exp.quote_lines.append((text, _ancestors(el, "blockquote")))
    return exp


# What the Markdown keeps.

BULLET = re.compile(r"^(?P<quote>[ >]*?>)?(?P<indent> *)([-*+]|\d+[.)]) ")


def fenced_blocks(markdown: str) -> list[str]:
    blocks = re.findall(r"^[ >]*(```|~~~)[^\n]*\n(.*?)^[ >]*\1", markdown, re.S | re.M)
    return [" ".join(re.sub(r"^[ >]*", "", body, flags=re.M).split()) for _, body in blocks]


class Checker:
    """Each check: is this expected piece of structure in the Markdown?"""

    def __init__(self, markdown: str) -> None:
        self.markdown = markdown
        self.lines = markdown.splitlines()
        self.flat = plain(markdown)
        self.fences = fenced_blocks(markdown)

    def _bullet_indent(self, text: str) -> int | None:
        for line in self.lines:
            match = BULLET.match(line)
            if match and text in plain(line[match.end() :]):
                return len(match.group("indent"))
        return None

    def heading(self, text: str) -> bool:
        return any(re.match(r" *#{1,6} ", line) and text in plain(line) for line in self.lines)

    def list_item(self, item: tuple[str, str | None]) -> bool:
        """A bullet line, indented deeper than its parent item's when nested."""
        text, parent = item
        indent = self._bullet_indent(text)
        if indent is None or parent is None:
            return indent is not None
        parent_indent = self._bullet_indent(parent)
        return parent_indent is not None and indent > parent_indent

    def quote_line(self, item: tuple[str, int]) -> bool:
        text, depth = item
        return any(
            text in plain(line) and re.match(r"[ >]*", line).group(0).count(">") >= depth
            for line in self.lines
        )

    def link(self, href: str) -> bool:
        return re.search(r"\]\(<?" + re.escape(href), self.markdown) is not None

    def table_row(self, item: tuple[list[str], bool]) -> bool:
        """A line of its own whose cells are the row's, quoted when the table is."""
        cells, quoted = item
        for line in self.lines:
            prefix = re.match(r"[ >]*", line).group(0)
            row = [c.strip() for c in plain(line[len(prefix) :]).split("|") if c.strip()]
            if "|" in line and row == cells and (">" in prefix or not quoted):
                return True
        return False

    def code_block(self, code: str) -> bool:
        return any(code in block for block in self.fences)

    def paragraph(self, text: str) -> bool:
        return text in self.flat


def kept(exp: Expected, markdown: str) -> dict[str, tuple[int, int]]:
    """(kept, expected) per structure."""
    check = Checker(markdown)
    pairs: dict[str, tuple[list, Callable[..., bool]]] = {
        "headings": (exp.headings, check.heading),
        "list_items": (exp.list_items, check.list_item),
        "quote_lines": (exp.quote_lines, check.quote_line),
        "links": (exp.links, check.link),
        "table_rows": (exp.table_rows, check.table_row),
        "code_blocks": (exp.code_blocks, check.code_block),
        "paragraphs": (exp.paragraphs, check.paragraph),
    }
    return {name: (sum(map(test, items)), len(items)) for name, (items, test) in pairs.items()}


# Documents: the corpus on disk, generated ones, adversarial ones.


def corpus_documents() -> list[tuple[str, str]]:
    paths = sorted({p for pattern in CORPUS_GLOBS for p in ROOT.glob(pattern)})
    return [(str(p.relative_to(ROOT)), p.read_bytes().decode("utf-8", "replace")) for p in paths]


def _sentence(rng: random.Random, n: int = 8) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def _list(rng: random.Random, depth: int) -> str:
    tag = rng.choice(("ul", "ol"))
    items = []
    for _ in range(rng.randint(2, 4)):
        nested = _list(rng, depth + 1) if depth < 2 and rng.random() < 0.4 else ""
        text = _sentence(rng, 5)
        if rng.random() < 0.2:  # an item of several paragraphs
            text = f"<p>{text}</p><p>{_sentence(rng)}</p>"
        items.append(f"<li>{text}{nested}</li>")
    return f"<{tag}>{''.join(items)}</{tag}>"


def _table(rng: random.Random) -> str:
    head = "".join(f"<th>{rng.choice(WORDS)}</th>" for _ in range(3))
    rows = "".join(
        "<tr>"
        + "".join(f"<td>{rng.choice(WORDS)} {rng.randint(1, 999)}</td>" for _ in range(3))
        + "</tr>"
        for _ in range(rng.randint(2, 5))
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _quote(rng: random.Random, depth: int = 0) -> str:
    inner = "".join(f"<p>{_sentence(rng)}</p>" for _ in range(rng.randint(1, 3)))
    if depth < 2 and rng.random() < 0.3:
        inner += _quote(rng, depth + 1)
    extras = (lambda r: _list(r, 1), _table, _code)
    inner += "".join(extra(rng) for extra in extras if rng.random() < 0.2)
    return f"<blockquote>{inner}</blockquote>"


def _paragraph(rng: random.Random) -> str:
    word = rng.choice(WORDS)
    link = f'<a href="https://ada.example.org/{word}-{rng.randint(1, 99)}">{word} notes</a>'
    return f"<p>{_sentence(rng)} See {link} and <code>{word}()</code>, <strong>{word}</strong>.</p>"


def _code(rng: random.Random) -> str:
    body = "\n".join(
        f"    {rng.choice(WORDS)}_{i} = {rng.randint(0, 9)} * x  # a &lt; b" for i in range(3)
    )
    return f'<pre><code class="language-python">def f(x):\n{body}\n    return x</code></pre>'


def _heading(rng: random.Random) -> str:
    level = rng.randint(1, 4)
    return f"<h{level}>{_sentence(rng, 4)}</h{level}>"


def generated_documents(count: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    blocks: list[Callable[[random.Random], str]] = [
        _paragraph,
        _quote,
        lambda r: _list(r, 0),
        _table,
        _code,
        _heading,
        lambda r: (
            f'<figure><img src="https://img.example/{r.randint(1, 9)}.png" alt="chart"></figure>'
        ),
        lambda r: f"<blockquote><table><tr><td>{_list(r, 1)}</td></tr></table></blockquote>",
    ]
    documents = []
    for i in range(count):
        body = "".join(rng.choice(blocks)(rng) for _ in range(rng.randint(6, 14)))
        if i % 3 == 0:  # hand-written HTML leaves out the end tags HTML lets one omit
            body = re.sub(r"</(li|p|td|th|tr)>", "", body)
        documents.append((f"generated/{i:03d}", body))
    return documents


def adversarial_documents() -> list[tuple[str, str, list[str]]]:
    """(name, HTML, texts that must survive): inputs a converter must get through."""
    deep = 1000
    return [
        (
            "div x1000",
            "<div>" * deep + "<p>deep div</p>" + "</div>" * deep + "<p>after it</p>",
            ["deep div", "after it"],
        ),
        (
            "blockquote x1000",
            "<blockquote>" * deep + "<p>deep quote</p>" + "</blockquote>" * deep,
            ["deep quote"],
        ),
        ("ul/li x1000", "<ul><li>" * deep + "deep item" + "</li></ul>" * deep, ["deep item"]),
        ("span x5000 unclosed", "<span>" * 5000 + "<p>unclosed spans</p>", ["unclosed spans"]),
        (
            "unclosed tags",
            "<p>one<p>two<div><b>three<table><tr><td>four",
            ["one", "two", "three", "four"],
        ),
        (
            "script, entities",
            "<script>if (a<b) {x()}</script><p>caf&eacute; &amp; &#x1F600; &bogus;</p>",
            ["caf\u00e9 & \U0001f600 &bogus;"],
        ),
        (
            "invalid utf-8",
            b"<p>caf\xe9 \xff ok</p>".decode("utf-8", "replace"),
            ["caf\ufffd \ufffd ok"],
        ),
        (
            "empty elements",
            "<p></p><ul><li></li></ul><table></table><blockquote></blockquote><pre></pre>"
            "<p>after empties</p>",
            ["after empties"],
        ),
        (
            "comments, cdata",
            "<!DOCTYPE html><!-- c --><![CDATA[ x ]]><p>after cdata</p>",
            ["after cdata"],
        ),
    ]


# Running and reporting.


@dataclass
class Score:
    kept: dict[str, list[int]] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)
    failed_documents: int = 0  # corpus documents whose conversion raised
    raised: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)


def safely(convert: Callable[[str], str], html: str) -> str | None:
    """The conversion, or None when it raised (a failed document for the caller)."""
    try:
        return convert(html)
    except Exception:
        return None


def score(convert: Callable[[str], str], documents: list[tuple[str, str]], repeat: int) -> Score:
    result = Score(kept={name: [0, 0] for name in (*STRUCTURES, "paragraphs")})
    for _, html in documents:
        markdown = safely(convert, html)
        result.failed_documents += markdown is None
        for name, (hit, total) in kept(expected(html), markdown or "").items():
            result.kept[name][0] += hit
            result.kept[name][1] += total
    for _ in range(repeat):
        started = time.perf_counter()
        for _, html in documents:
            safely(convert, html)
        result.seconds.append(time.perf_counter() - started)
    for name, html, wanted in adversarial_documents():
        try:
            markdown = convert(html)
        except Exception as exc:
            result.raised.append(f"{name} ({type(exc).__name__})")
            continue
        if not all(plain(text) in plain(markdown) for text in wanted):
            result.lost.append(name)
    return result


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = re.search(r"Model name:\s*(.+)", lscpu)
        cpus = re.search(r"^CPU\(s\):\s*(\d+)", lscpu, re.M)
        described = (
            f"{model.group(1).strip() if model else '?'}, {cpus.group(1) if cpus else '?'} CPUs"
        )
    except (OSError, subprocess.CalledProcessError):
        described = platform.processor() or platform.machine()
    return f"{described}; Python {platform.python_version()}, {platform.system()}"


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("html2text", "markdownify", "beautifulsoup4", "trafilatura", "lxml"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def report(scores: dict[str, Score], documents: int, repeat: int) -> str:
    names = (*STRUCTURES, "paragraphs")
    head = "| candidate | " + " | ".join(n.replace("_", " ") for n in names)
    head += (
        " | all kept | documents raised | ms/doc | adversarial: raised | adversarial: lost text |"
    )
    rows = [head, "|---" * (len(names) + 6) + "|"]
    for candidate, s in scores.items():
        cells = [
            f"{hit}/{total} ({100 * hit / max(total, 1):.0f}%)" for hit, total in s.kept.values()
        ]
        hits = sum(hit for hit, _ in s.kept.values())
        total = sum(t for _, t in s.kept.values())
        ms = 1000 * statistics.median(s.seconds) / documents
        rows.append(
            f"| {candidate} | {' | '.join(cells)} | {100 * hits / max(total, 1):.1f}% "
            f"| {s.failed_documents} | {ms:.2f} "
            f"| {', '.join(s.raised) or 'none'} | {', '.join(s.lost) or 'none'} |"
        )
    return "\n".join(rows) + f"\n\n{documents} documents, timing: median of {repeat} passes."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--candidates",
        nargs="+",
        choices=sorted(CANDIDATES),
        default=list(CANDIDATES),
        help="converters to score (default: all)",
    )
    parser.add_argument("--generated", type=int, default=60, help="generated documents (60)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated documents")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes over all documents")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="also score html_to_markdown from this file, e.g. an older extract.py from git show",
    )
    args = parser.parse_args()

    documents = corpus_documents() + generated_documents(args.generated, args.seed)
    scores = {}
    if args.baseline:
        spec = importlib.util.spec_from_file_location("baseline", args.baseline)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
        scores["baseline"] = score(module.html_to_markdown, documents, args.repeat)
    for name in args.candidates:
        print(f"scoring {name} ...", file=sys.stderr)
        try:
            CANDIDATES[name]("<p>warm-up</p>")
        except ImportError as exc:  # html2text is a candidate, not a dependency
            print(f"skipped {name}: {exc}; install it to score it", file=sys.stderr)
            continue
        scores[name] = score(CANDIDATES[name], documents, args.repeat)
    command = " ".join(["benchmarks/bench_html.py", *sys.argv[1:]])
    text = (
        f"Command: `.venv/bin/python {command}`\n\n"
        f"Machine: {machine()}. Date: {datetime.date.today().isoformat()}.\n\n"
        f"Libraries: {versions()}.\n\n{report(scores, len(documents), args.repeat)}\n"
    )
    print(text)


if __name__ == "__main__":
    main()
