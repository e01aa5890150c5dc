"""Generated HTML through every importer and the article path: nothing raises, no paragraph is lost.

Documents are built from paragraphs of known text, nested in quotes, lists and tables (lists inside
tables inside quotes included), with optional end tags left out, inline markup, entities, scripts,
empty elements, 1,000-deep nesting and invalid UTF-8 bytes. Every paragraph's text must appear in
the Markdown (whitespace and Markdown markers aside); the importer never raises.
"""

from __future__ import annotations

import html
import json
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twin_platform.collection.collected import Collected
from twin_platform.collection.html import html_to_markdown, main_content
from twin_platform.collection.importers import import_export

AUTHOR = "ada-quill"
EXAMPLES = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SCRIPT_TEXT = "SCRIPTMARKER"
DEEP = 1000


@dataclass(frozen=True)
class Doc:
    """An HTML fragment and the texts a reader must find in its Markdown."""

    html: str
    texts: tuple[str, ...] = ()

    def __add__(self, other: Doc) -> Doc:
        return Doc(self.html + other.html, self.texts + other.texts)


# Text: words and entities, as (HTML, what a reader sees). A paragraph starts with a word, so no
# text of its own looks like a Markdown marker at the start of a line.
WORD = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=9
)
ENTITY = st.sampled_from(
    [
        ("&amp;", "&"),
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&quot;", '"'),
        ("&eacute;t&eacute;", "été"),
        ("&#x1F600;", "\U0001f600"),
        ("&nbsp;", "\xa0"),
        ("café", "café"),
        ("—", "—"),
        ("50%", "50%"),
        ("?", "?"),
        (",", ","),
    ]
)
TOKEN = st.one_of(WORD.map(lambda w: (w, w)), ENTITY)
INLINE = st.sampled_from(["b", "em", "code", "a", None, None])


@st.composite
def inline_text(draw: st.DrawFn) -> Doc:
    """Words with entities, some of them inside <b>, <em>, <code> or a link, closed or not."""
    first = draw(WORD)
    tokens = [(first, first), *draw(st.lists(TOKEN, max_size=12))]
    start = draw(st.integers(1, len(tokens)))
    tag = draw(INLINE)
    pieces = [h for h, _ in tokens]
    if tag is not None and pieces[start:]:
        attrs = ' href="https://ada.example.org/p"' if tag == "a" else ""
        inner = " ".join(pieces[start:])
        pieces[start:] = [f"<{tag}{attrs}>{inner}" + ("" if draw(st.booleans()) else f"</{tag}>")]
    return Doc(" ".join(pieces), (" ".join(t for _, t in tokens),))


def closed(tag: str, inner: str, optional_end: bool) -> str:
    """`<tag>inner</tag>`, or without the end tag HTML lets one leave out."""
    return f"<{tag}>{inner}" + ("" if optional_end else f"</{tag}>")


@st.composite
def paragraph(draw: st.DrawFn) -> Doc:
    text = draw(inline_text())
    return Doc(closed("p", text.html, draw(st.booleans())), text.texts)


@st.composite
def heading(draw: st.DrawFn) -> Doc:
    level = draw(st.integers(1, 6))
    text = draw(inline_text())
    return Doc(f"<h{level}>{text.html}</h{level}>", text.texts)


@st.composite
def code_block(draw: st.DrawFn) -> Doc:
    lines = draw(st.lists(st.lists(WORD, min_size=1, max_size=5), min_size=1, max_size=4))
    code = "\n".join("    " + " ".join(words) + " &lt; 2" for words in lines)
    return Doc(f"<pre><code>{code}</code></pre>", (html.unescape(code),))


NOISE = st.sampled_from(
    [
        f'<script>var s = "<p>{SCRIPT_TEXT}</p>";</script>',
        f"<style>p::after {{ content: '{SCRIPT_TEXT}' }}</style>",
        "<p></p>",
        "<ul></ul>",
        "<ol><li></li></ol>",
        "<table></table>",
        "<blockquote></blockquote>",
        "<pre></pre>",
        "<h2></h2>",
        '<a href="https://ada.example.org/empty"></a>',
        '<img src="https://ada.example.org/spacer.gif" alt="">',
        "<!-- a comment -->",
        "<br>",
        "<hr>",
        "<div><span></span></div>",
    ]
).map(Doc)
LEAF = st.one_of(paragraph(), paragraph(), heading(), code_block(), NOISE)


def _wrap_blocks(children: st.SearchStrategy[list[Doc]]) -> st.SearchStrategy[Doc]:
    """Quotes, lists and tables around generated blocks: each child a quote's block, an item or
    a cell (so lists inside tables inside quotes come up)."""

    @st.composite
    def build(draw: st.DrawFn) -> Doc:
        kind = draw(st.sampled_from(["blockquote", "ul", "ol", "table", "div"]))
        items = draw(children)
        texts = tuple(t for item in items for t in item.texts)
        omit = draw(st.booleans())
        if kind in ("blockquote", "div"):
            inner = "".join(item.html for item in items)
        elif kind in ("ul", "ol"):
            inner = "".join(closed("li", item.html, omit) for item in items)
        else:
            cells = "".join(closed("td", item.html, omit) for item in items)
            inner = closed("tr", cells, omit)
        return Doc(f"<{kind}>{inner}</{kind}>", texts)

    return build()


BLOCK = st.recursive(
    LEAF, lambda children: _wrap_blocks(st.lists(children, min_size=1, max_size=3)), max_leaves=8
)


@st.composite
def deep(draw: st.DrawFn, block: st.SearchStrategy[Doc]) -> Doc:
    """A block under 1,000 levels of one element, closed or not."""
    tag = draw(st.sampled_from(["div", "blockquote", "span", "section"]))
    inner = draw(block)
    close = "" if draw(st.booleans()) else f"</{tag}>" * DEEP
    return Doc(f"<{tag}>" * DEEP + inner.html + close, inner.texts)


@st.composite
def document(draw: st.DrawFn) -> Doc:
    """A body: generated blocks, sometimes one of them 1,000 levels deep."""
    blocks = draw(st.lists(BLOCK, min_size=1, max_size=5))
    if draw(st.integers(0, 4)) == 0:
        blocks.insert(draw(st.integers(0, len(blocks))), draw(deep(BLOCK)))
    result = Doc("")
    for block in blocks:
        result += block
    return result


def squash(text: str) -> str:
    """Markdown as a reader sees it: no link syntax, emphasis, pipes or line markers."""
    while (unlinked := re.sub(r"!?\[([^\]\[]*)\]\([^)]*\)", r"\1", text)) != text:
        text = unlinked  # links inside links (invalid HTML, but it happens) unwrap from inside
    text = re.sub(r"(?m)^(?:[ \t>]|[-*+](?=\s)|\d+\.(?=\s)|#{1,6}(?=\s))*", "", text)
    text = re.sub(r"(?m)^\|?[ \-|]*$", "", text)  # table rules
    return " ".join(re.sub(r"[*`|]", " ", text).split())


def assert_kept(doc: Doc, markdown: str) -> None:
    flat = squash(markdown)
    for text in doc.texts:
        assert " ".join(text.split()) in flat, (text, markdown[:2000])
    assert SCRIPT_TEXT not in markdown


def only_document(result: Collected) -> str:
    assert not result.failures, result.failures
    [doc] = result.documents
    return doc.content


def assert_imported(doc: Doc, result: Collected) -> None:
    """One document with every paragraph, its invalid bytes decoded as replacement characters."""
    content = only_document(result)
    assert_kept(doc, content)
    assert "caf\ufffd \ufffd\ufffd" in content


INVALID = "<p>INVALID-BYTES</p>"


def encoded(page: str) -> bytes:
    """The page as UTF-8 with invalid bytes where INVALID stands, as mixed-encoding exports have."""
    return page.encode().replace(b"INVALID-BYTES", b"caf\xe9 \xff\xfe")


# The conversion and the generic article path.


@EXAMPLES
@given(document())
def test_conversion_keeps_every_paragraph(doc: Doc) -> None:
    assert_kept(doc, html_to_markdown(doc.html))


@EXAMPLES
@given(document())
def test_main_content_never_raises(doc: Doc) -> None:
    """Main-content extraction may drop text by design (navigation, footers); it never raises."""
    page = f"<html><head><title>T</title></head><body><article>{doc.html}</article></body></html>"
    extracted = main_content(page, "https://ada.example.org/post")
    assert isinstance(extracted.content, str) and SCRIPT_TEXT not in extracted.content


# Every importer, on files written the way its export lays them out.


def import_files(files: dict[str, bytes], kind: str) -> Collected:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, data in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        return import_export(root, AUTHOR, kind=kind)


@EXAMPLES
@given(document())
def test_substack_importer(doc: Doc) -> None:
    csv = "post_id,post_date,is_published,title\n1.generated,2024-01-01T00:00:00Z,true,Generated\n"
    result = import_files(
        {"posts.csv": csv.encode(), "posts/1.generated.html": encoded(doc.html + INVALID)},
        "substack",
    )
    assert_imported(doc, result)


def medium_post(body: str) -> str:
    return (
        '<html><head><title>T</title></head><body><article class="h-entry">'
        '<header><h1 class="p-name">Generated</h1></header>'
        f'<section data-field="body" class="e-content">{body}</section>'
        '<footer><a href="https://medium.com/@ada/generated-1" class="p-canonical">link</a>'
        "</footer></article></body></html>"
    )


@EXAMPLES
@given(document())
def test_medium_importer(doc: Doc) -> None:
    post = encoded(medium_post(doc.html + INVALID))
    result = import_files({"posts/2024-01-01_Generated-1.html": post}, "medium")
    assert_imported(doc, result)


@EXAMPLES
@given(document())
def test_linkedin_article_importer(doc: Doc) -> None:
    article = (
        '<html><head><title>T</title></head><body><h1><a href="https://www.linkedin.com/pulse/g">'
        'Generated</a></h1><p class="published">Published on 2024-01-01 10:00</p>'
        f"<div>{doc.html}{INVALID}</div></body></html>"
    )
    result = import_files({"Articles/Articles/Generated.html": encoded(article)}, "linkedin")
    assert_imported(doc, result)


@EXAMPLES
@given(document())
def test_folder_importer(doc: Doc) -> None:
    page = f"<html><head><title>Generated</title></head><body>{doc.html}{INVALID}</body></html>"
    result = import_files({"generated.html": encoded(page)}, "folder")
    assert_imported(doc, result)


@EXAMPLES
@given(document())
def test_x_importer_keeps_html_as_text(doc: Doc) -> None:
    """Tweets are text: markup in them is the author's characters, entities decoded."""
    tweets = [{"tweet": {"id_str": "1", "full_text": doc.html}}]
    script = "window.YTD.tweets.part0 = " + json.dumps(tweets)
    result = import_files({"data/tweets.js": script.encode()}, "x")
    expected = html.unescape(doc.html)
    assert only_document(result) == expected


# Whatever a document holds, the importer reports it instead of raising.

IMPORTERS: dict[str, Callable[[str], dict[str, bytes]]] = {
    "substack": lambda body: {
        "posts.csv": b"post_id,is_published,title\n1.g,true,G\n",
        "posts/1.g.html": body.encode(),
    },
    "medium": lambda body: {"posts/2024-01-01_G-1.html": medium_post(body).encode()},
    "linkedin": lambda body: {"Articles/Articles/G.html": f"<h1>G</h1>{body}".encode()},
    "folder": lambda body: {"g.html": body.encode()},
}


@EXAMPLES
@given(st.sampled_from(sorted(IMPORTERS)), st.text(max_size=300))
def test_importers_never_raise_on_arbitrary_text(kind: str, body: str) -> None:
    result = import_files(IMPORTERS[kind](body), kind)
    assert len(result.documents) + len(result.failures) == 1
