"""Chunks fit the model's real tokenizer, follow each category's boundaries, and have stable ids."""

from __future__ import annotations

import itertools
import re

import pytest
from tokenizers import Tokenizer

from twin_platform.features.chunking import Chunker, chunk_id
from twin_platform.features.embedding import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return load_tokenizer()


@pytest.fixture(scope="module")
def chunker(tokenizer: Tokenizer) -> Chunker:
    return Chunker(tokenizer, max_tokens=256)


def model_tokens(tokenizer: Tokenizer, text: str) -> int:
    """Tokens the embedding model sees, special tokens included: counted independently of the chunker."""
    return len(tokenizer.encode(text, add_special_tokens=True).ids)


def article(paragraphs: int) -> str:
    return "\n\n".join(
        f"## Part {i}\n\nParagraph {i} explains vector search step {i}. "
        + f"It adds detail number {i}. " * 12
        for i in range(paragraphs)
    )


def test_short_post_stays_whole(chunker: Chunker, tokenizer: Tokenizer) -> None:
    post = "Shipped incremental embeddings today 🚀\n\nOnly changed chunks get re-embedded. #mlops"
    chunks = chunker.chunk("doc", "posts", post)
    assert [c.content for c in chunks] == [post]
    assert chunks[0].token_count == model_tokens(tokenizer, post)


def test_articles_fit_the_model_keep_all_text_and_overlap(
    chunker: Chunker, tokenizer: Tokenizer
) -> None:
    text = article(20)
    chunks = chunker.chunk("doc", "articles", text)
    assert len(chunks) > 5
    for chunk in chunks:
        assert chunk.token_count == model_tokens(tokenizer, chunk.content) <= 256
    joined = " ".join(c.content for c in chunks)
    for sentence in re.findall(r"Paragraph \d+ explains vector search step \d+\.", text):
        assert sentence in joined
    overlaps = [
        a.content.split(". ")[-1].strip() in b.content for a, b in itertools.pairwise(chunks)
    ]
    assert sum(overlaps) >= len(chunks) // 2  # consecutive chunks share a trailing sentence
    assert chunks[3].metadata["section"].startswith("Part")
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))


def test_long_posts_and_giant_documents_split_safely(
    chunker: Chunker, tokenizer: Tokenizer
) -> None:
    long_post = "Thoughts on retrieval. " * 300
    assert len(chunker.chunk("p", "posts", long_post)) > 1
    giant = article(400)  # ~200k characters
    chunks = chunker.chunk("g", "articles", giant)
    assert len(chunks) > 100 and max(c.token_count for c in chunks) <= 256
    unbroken = "".join(f"{i:05d}" for i in range(8000))  # 40k characters, no boundary at all
    pieces = chunker.chunk("u", "articles", unbroken)
    assert len(pieces) > 2 and all(len(c.content) <= chunker.max_chars for c in pieces)
    assert "".join(c.content for c in pieces) == unbroken


def test_code_is_cut_at_file_and_definition_boundaries(
    chunker: Chunker, tokenizer: Tokenizer
) -> None:
    functions = "\n\n\n".join(
        f'def step_{i}(value):\n    """Step {i} of the pipeline."""\n'
        + "".join(f"    value = value + {j}  # line {j}\n" for j in range(12))
        + "    return value"
        for i in range(8)
    )
    repo = f"# repo\n\n## src/steps.py\n\n```python\n{functions}\n```\n\n## README.md\n\n```markdown\nHello\n```\n"
    chunks = chunker.chunk("r", "repositories", repo)
    code = [c for c in chunks if c.metadata.get("path") == "src/steps.py"]
    assert len(code) >= 2
    for chunk in code:
        assert chunk.content.startswith("src/steps.py\ndef step_")  # starts at a definition
        assert chunk.token_count == model_tokens(tokenizer, chunk.content) <= 256
        assert chunk.metadata["language"] == "python"
    assert "    value = value + 3  # line 3" in code[0].content  # indentation kept
    assert [c.content for c in chunks if c.metadata.get("path") == "README.md"] == [
        "README.md\nHello"
    ]


def test_ids_are_deterministic_and_unique_per_document(chunker: Chunker) -> None:
    text = article(6)
    first = chunker.chunk("doc-a", "articles", text)
    assert [c.chunk_id for c in first] == [
        c.chunk_id for c in chunker.chunk("doc-a", "articles", text)
    ]
    assert first[0].chunk_id == chunk_id("doc-a", first[0].content)
    other = chunker.chunk("doc-b", "articles", text)
    assert not {c.chunk_id for c in first} & {c.chunk_id for c in other}
    repeated = "Same paragraph again and again.\n\n" * 3
    assert len(chunker.chunk("d", "posts", repeated + "x " * 400)) == len(
        {c.chunk_id for c in chunker.chunk("d", "posts", repeated + "x " * 400)}
    )


def test_empty_content_gives_no_chunks_and_limits_are_validated(
    tokenizer: Tokenizer, chunker: Chunker
) -> None:
    assert chunker.chunk("e", "articles", "  \n ") == []
    with pytest.raises(ValueError, match="no room"):
        Chunker(tokenizer, max_tokens=10)
    assert Chunker(tokenizer, max_tokens=128).fingerprint != chunker.fingerprint
