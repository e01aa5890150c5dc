"""Cleaning keeps meaning (code, URLs, Markdown) and reports bad input instead of crashing."""

from __future__ import annotations

import unicodedata

import pytest

from twin_platform.features.cleaning import clean, detect_language

ARTICLE = """# Vector search in Postgres

Skip to content
[Home](/) [Blog](/blog) [About](/about)

Read the **pgvector** docs at https://github.com/pgvector/pgvector?tab=readme-ov-file#hnsw first.

- keep `m = 16`
- then tune *ef_search*

```python
def search(conn,   query):
    return conn.execute("SELECT 1")    
```

Share on LinkedIn
Subscribe
© 2025 Ada Quill. All rights reserved.
"""


def reference_clean(text: str) -> str:
    """What the reference pipeline does: keep only word characters, whitespace and . , ! ?"""
    import re

    return re.sub(r"\s+", " ", re.sub(r"[^\w\s.,!?]", " ", text)).strip()


def test_article_keeps_code_urls_and_markdown_and_drops_boilerplate() -> None:
    result = clean(ARTICLE, "articles")
    text = result.content
    assert result.status == "ok" and result.language == "en"
    assert "https://github.com/pgvector/pgvector?tab=readme-ov-file#hnsw" in text
    assert (
        "# Vector search in Postgres" in text
        and "- keep `m = 16`" in text
        and "**pgvector**" in text
    )
    assert (
        'def search(conn,   query):\n    return conn.execute("SELECT 1")\n```' in text
    )  # verbatim, trailing space gone
    for furniture in (
        "Skip to content",
        "[Home](/)",
        "Share on LinkedIn",
        "Subscribe",
        "All rights reserved",
    ):
        assert furniture not in text
    assert result.removed_lines == 5
    # The reference destroys what we keep.
    assert "https://github.com" not in reference_clean(
        ARTICLE
    ) and "`m = 16`" not in reference_clean(ARTICLE)


def test_unicode_and_whitespace_are_normalised_outside_code() -> None:
    raw = "ﬁne\u00a0\u00a0 café\u200b   spaces\t\there\n\n\n\n\nnext para \n```\nx  =  'ﬁ'\n```"
    text = clean(raw, "posts").content
    assert text.startswith("fine café spaces here\n\nnext para\n")
    assert "x  =  'ﬁ'" in text  # code keeps its spacing and characters
    assert unicodedata.is_normalized("NFC", text)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("", "empty"),
        ("  \n\t \n", "empty"),
        ("Share on Twitter\nSubscribe", "empty"),
        (None, "non_text"),
        ({"a": 1}, "non_text"),
        (b"\x00\x01\x02\xff\xfe" * 400, "non_text"),
        ("A" * 5000, "non_text"),
    ],
)
def test_bad_input_is_reported_not_raised(raw: object, status: str) -> None:
    result = clean(raw, "articles")
    assert result.status == status and result.content == ""


def test_invalid_utf8_nul_and_lone_surrogates_become_valid_text() -> None:
    result = clean(b"caf\xc3\xa9 ok \xff then\x00 more words here", "posts")
    assert result.content == "café ok \ufffd then more words here"
    surrogate = clean("broken \udcff surrogate but fine", "posts").content
    surrogate.encode("utf-8")  # would raise if a lone surrogate survived
    assert surrogate.startswith("broken ")


def test_giant_document_is_truncated_and_flagged() -> None:
    raw = "A sentence of a very long article. " * 100_000
    result = clean(raw, "articles", max_chars=50_000)
    assert result.status == "truncated" and len(result.content) <= 50_000


def test_html_is_converted_to_markdown_without_page_furniture() -> None:
    html = (
        "<html><body><nav><a href='/'>Home</a><a href='/blog'>Blog</a></nav><article><h1>Title here</h1>"
        "<p>First paragraph about <a href='https://example.com/x'>embeddings</a> and vector search in practice, "
        "long enough to be the main content of the page.</p><p>Second paragraph with more words about chunking "
        "documents for retrieval augmented generation.</p></article><footer>Copyright 2025</footer></body></html>"
    )
    text = clean(html, "articles").content
    assert "First paragraph about" in text and "Second paragraph" in text
    assert "<p>" not in text and "Copyright" not in text


def test_repository_keeps_code_and_drops_lock_and_minified_files() -> None:
    repo = (
        "# quillstack\n\n## src/split.py\n\n```python\nimport re\n\n\ndef split(text):\n    return re.split(r'\\s+', text)\n```\n\n"
        "## poetry.lock\n\n```\n[[package]]\nname = 'x'\n```\n\n"
        "## static/app.min.js\n\n```javascript\n" + "var a=1;" * 200 + "\n```\n"
    )
    text = clean(repo, "repositories").content
    assert "def split(text):\n    return re.split(r'\\s+', text)" in text
    assert "import re\n\n\ndef split" in text  # blank lines in code are kept
    assert "[[package]]" not in text and "var a=1" not in text
    assert "poetry.lock" not in text and "app.min.js" not in text


@pytest.mark.parametrize(
    ("text", "language"),
    [
        (
            "The model reads the text and it returns a vector for each of the chunks in the store.",
            "en",
        ),
        (
            "Le pain est bon et la croûte est croustillante, mais il faut une longue fermentation pour que la mie soit belle.",
            "fr",
        ),
        (
            "Der Teig ist nicht fertig, und die Kruste ist mit dem Ofen zu dunkel für den Test.",
            "de",
        ),
        ("これは日本語の文章です。ひらがなとカタカナがあります。", "ja"),
        ("12345 67890", "und"),
    ],
)
def test_language_detection(text: str, language: str) -> None:
    assert detect_language(text) == language


WRAPPED = """# Notes on wrapping

This paragraph was hard-wrapped by html2text at seventy-eight columns, so
every line but the last one is nearly as long as the others, and a hyphen-
ated word was split across two lines when the wrapper broke after its hyphen.

A second paragraph keeps going for long enough to be wrapped as well, which
tells the cleaner the document was hard-wrapped and not written line by line.
A line break the author asked for<BR>
stays a break.

  * a list item stays as it is
> a quote stays as it is
| a | table |

    indented   code    stays
""".replace("<BR>", "  ")  # two trailing spaces: a hard line break in Markdown


def test_hard_wrapped_paragraphs_are_reflowed_and_structure_is_untouched() -> None:
    lines = clean(WRAPPED, "articles").content.split("\n")
    assert (
        "This paragraph was hard-wrapped by html2text at seventy-eight columns, so every line but "
        "the last one is nearly as long as the others, and a hyphen-ated word was split across two "
        "lines when the wrapper broke after its hyphen." in lines
    )
    assert any(
        line.endswith("not written line by line. A line break the author asked for")
        for line in lines
    )
    assert "stays a break." in lines
    assert "  * a list item stays as it is" in lines and "> a quote stays as it is" in lines
    assert "| a | table |" in lines and "    indented   code    stays" in lines


def _page(n: int, body: str) -> str:
    return (
        f"# Site Name\n\nSubscribeSign in\n\n# Post {n} about a topic\n\nAda Quill\n\nJun {n}, 2024\n\n"
        f"Share this post\n\n{body}\n\n## Conclusion\n\nUnique closing words of post number {n}.\n\n"
        "Thanks for reading! The next issue walks through the rest of the pipeline, so keep an eye "
        "out for it.\n\nReady for more?\n\nMember of the Curious Writers circle"
    )


def test_lines_recurring_across_the_authors_pages_are_chrome_and_prose_is_kept_once() -> None:
    from twin_platform.features.cleaning import DocumentContext, corpus_profile

    pages = {
        f"https://a.example/p/{n}": _page(n, f"Body of post {n} says something new.")
        for n in range(1, 6)
    }
    profile = corpus_profile(pages.items())
    assert profile.documents == 5 and profile.threshold == 2
    cleaned = {
        url: clean(text, "articles", context=DocumentContext(profile=profile, document=url)).content
        for url, text in pages.items()
    }
    first = cleaned["https://a.example/p/1"]
    assert first.startswith("# Post 1 about a topic\n\nBody of post 1 says something new.")
    for text in cleaned.values():
        assert "Member of the Curious Writers circle" not in text and "Ada Quill" not in text
        assert "## Conclusion" in text  # recurring, but it introduces the author's own words
        assert "Site Name" not in text and "Jun " not in text
    # The recurring sign-off is the author's prose: kept in one page (the first by URL) only.
    assert [url for url, t in cleaned.items() if "Thanks for reading!" in t] == [
        "https://a.example/p/1"
    ]


def test_a_duplicated_article_does_not_mark_its_own_text_as_chrome() -> None:
    from twin_platform.features.cleaning import corpus_profile

    body = "\n\n".join(f"Paragraph {i} of the one article published twice." for i in range(10))
    profile = corpus_profile([("https://a.example/a", body), ("https://a.example/a?ref=x", body)])
    assert profile.documents == 1 and not profile.lines


def test_medium_page_text_glued_by_get_text_is_cut_into_paragraphs() -> None:
    from twin_platform.features.cleaning import DocumentContext

    glued = (
        "Short SEO title | PubOpen in appSign upSign inWriteSign upSign inTop highlight"
        "The real titleA subtitle that explains itAda Quill·FollowPublished inPub·6 min read·"
        "May 4, 20241.2K9ListenShare"
        + "".join(
            f"Sentence number {i} of the article is here.Then another one follows it."
            for i in range(8)
        )
        + "Sign up to discover human stories that deepen your understanding of the world.FreeHelpStatus"
    )
    text = clean(
        glued, "articles", context=DocumentContext("The real title", "A subtitle that explains it")
    ).content
    lines = text.split("\n")
    assert lines[:3] == ["# The real title", "", "A subtitle that explains it"]
    assert "Sentence number 7 of the article is here." in lines
    for chrome in ("Open in app", "ListenShare", "·Follow", "Sign up to discover", "SEO title"):
        assert chrome not in text
