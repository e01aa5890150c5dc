"""The full-text arm's cost cap: words chosen by their estimated matches, from planner statistics."""

from __future__ import annotations

import numpy as np
from conftest import add_chunks

from twin_platform.rag.retriever import Retriever
from twin_platform.storage.feature_store import search, writes
from twin_platform.storage.postgres import connect


def test_estimates_follow_the_rarest_stem_and_leave_out_common_words() -> None:
    stats = search.LexemeStats(
        rows=1000, shares={"vector": 0.5, "index": 0.01, "pgvector": 0.001}, rare_share=0.0005
    )
    assert stats.matches(("pgvector",), max_share=0.2) == 1.0
    assert stats.matches(("vector",), max_share=0.2) is None  # in half the chunks: no signal
    assert stats.matches((), max_share=0.2) is None  # a stopword
    # A word of two stems matches where both are (plainto_tsquery ANDs them); unknown = rare.
    assert stats.matches(("index", "hnsw"), max_share=0.2) == 0.5


def test_the_lexical_query_takes_the_rarest_words_within_the_cap(postgres_url: str) -> None:
    author = "lexical-cap-test"
    texts = [f"common words everywhere {'rarer ' if i < 30 else ''}chunk {i}" for i in range(200)]
    vectors = np.full((len(texts), 384), 1 / np.sqrt(384), dtype=np.float32)
    with connect(postgres_url) as conn:
        chunks = add_chunks(conn, author, texts)
        writes.insert_embeddings(conn, chunks, vectors, "synthetic")
        try:
            conn.execute("ANALYZE embedded_chunks")
            stats = search.lexeme_stats(conn)
            assert stats.rows >= 200 and stats.shares
            assert search.word_lexemes(conn, ["Running", "the"]) == {"Running": ("run",), "the": ()}
            retriever = Retriever(None, None, max_lexeme_share=1.0, max_lexical_matches=100)
            # "rarer" (about 30 chunks) fits under 100 matches; "common" (200 and more) does not.
            assert retriever._lexical_query(conn, "common rarer") == "rarer"
            retriever.max_lexical_matches = 10**6
            assert set(retriever._lexical_query(conn, "common rarer").split(" or ")) == {
                "rarer",
                "common",
            }
        finally:
            writes.delete_documents(conn, [chunks[0].document_id])
