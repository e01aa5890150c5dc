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
