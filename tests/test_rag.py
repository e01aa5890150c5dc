"""The retrieval module and generation against the real Postgres, embedding model and SmolLM2 GGUF."""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from rag_fixtures import load_corpus

from twin_platform.monitoring import Trace, TraceWriter, add_feedback, summarize
from twin_platform.prompts import chat_messages
from twin_platform.rag import context, expansion, rerank, self_query
from twin_platform.rag.retriever import Refreshed, deduplicate, reciprocal_rank_fusion
from twin_platform.settings import load_settings
from twin_platform.storage.feature_store.records import Chunk

AUTHORS = ["rhea-vance", "bob-stone", "ada-quill"]


def chunk(chunk_id: str, content: str = "", **ranks: int) -> Chunk:
    return Chunk(
        chunk_id=chunk_id,
        document_id="d",
        author="a",
        category="posts",
        source_url="u",
        content=content or chunk_id,
        similarity=0.5,
        ranks=ranks,
    )


# Pure steps ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "author", "category"),
    [
        ("What does Rhea Vance feed her starter?", "rhea-vance", None),
        ("what did rhea-vance say in her posts about locks", "rhea-vance", "posts"),
        ("Summarise bob stone's articles on running", "bob-stone", None),
        ("Find it in Bob Stone's articles", "bob-stone", "articles"),
        ("Write a LinkedIn post about sourdough", None, None),  # a post to write is not a filter
        ("Show me code from the repositories", None, "repositories"),
    ],
)
def test_self_query_rules(query: str, author: str | None, category: str | None) -> None:
    found = self_query.extract_filters(query, AUTHORS)
    assert (found.author, found.category) == (author, category)


def test_keyword_expansion() -> None:
    assert expansion.keywords("What does Rhea say about Postgres locks?") == "rhea postgres locks"
    assert expansion.expand("What is Gerald?", 3) == ["What is Gerald?", "gerald"]
    assert expansion.expand("gerald", 3) == ["gerald"]  # nothing new to add
    assert expansion.expand("What is Gerald?", 1) == ["What is Gerald?"]
    with pytest.raises(ValueError, match="unknown expansion mode"):
        expansion.expand("q", 2, mode="magic")


def test_reciprocal_rank_fusion_rewards_agreement() -> None:
    both = chunk("both", **{"vector:0": 2, "lexical:0": 2})
    vector_top = chunk("vector_top", **{"vector:0": 1})
    lexical_top = chunk("lexical_top", **{"lexical:0": 1})
    fused = reciprocal_rank_fusion([vector_top, lexical_top, both])
    assert fused[0].chunk_id == "both"
    assert fused[0].score == pytest.approx(2 / 62)


def test_refreshed_value_is_fetched_by_one_caller_at_a_time() -> None:
    calls: list[int] = []
    release = threading.Event()

    def fetch() -> int:
        calls.append(1)
        if len(calls) > 1:
            release.wait(5)
        return len(calls)

    value = Refreshed(fetch, ttl_s=0.05)
    assert value.get() == 1
    time.sleep(0.06)
    refresher = threading.Thread(target=value.get)
    refresher.start()
    while len(calls) < 2:  # the refresh is under way
        time.sleep(0.001)
    assert [value.get() for _ in range(5)] == [1] * 5  # the others keep the old value
    release.set()
    refresher.join()
    assert value.get() == 2 and len(calls) == 2


def test_deduplicate_by_id_and_text() -> None:
    a, a_again = chunk("a", "Same words, here."), chunk("a", "other")
    crosspost = chunk("b", "same  words here")  # same text modulo case, spaces and punctuation
    kept = deduplicate([a, a_again, crosspost, chunk("c", "different")])
    assert [c.chunk_id for c in kept] == ["a", "c"]


def test_rerankers_order_by_relevance() -> None:
    good = chunk("good", "Gerald the starter eats rye flour")
    bad = chunk("bad", "Trail running in the mountains")
    good.similarity, bad.similarity = 0.2, 0.6
    assert [
        c.chunk_id
        for c in rerank.rerank("What does Gerald eat?", [bad, good], 1, rerank.lexical_scores)
    ] == ["good"]
    # No query word in either: the similarity decides; a shared rare word outweighs a small gap.
    assert [
        c.chunk_id for c in rerank.rerank("q", [good, bad], 2, rerank.get_reranker("bi-encoder"))
    ] == [
        "bad",
        "good",
    ]
    good.similarity = 0.5
    assert (
        rerank.rerank("gerald", [bad, good], 1, rerank.get_reranker("bi-encoder"))[0].chunk_id
        == "good"
    )
    with pytest.raises(ValueError, match="unknown reranker"):
        rerank.get_reranker("cross-encoder:")


@pytest.mark.parametrize(
    ("text", "word", "found"),
    [
        ("ship the rye loaf", "rye", True),
        ("rye", "rye", True),
        ("(rye), then", "rye", True),
        ("ryegrass and rye-bread", "rye", False),  # inside longer words only
        ("pre_rye or rye's", "rye", False),
        ("ryegrass, then rye.", "rye", True),  # a later occurrence counts
        ("c++ is fine", "c++", True),
        ("ci-cd pipelines", "ci", False),
    ],
)
def test_contains_word_is_whole_word(text: str, word: str, found: bool) -> None:
    assert rerank.contains_word(text, word) is found


def test_context_respects_token_budget() -> None:
    chunks = [chunk(str(i), " ".join(["word"] * 200)) for i in range(5)]
    built = context.assemble(chunks, budget_tokens=300)
    assert built.tokens <= 300
    assert context.approx_tokens(built.text) <= 300
    assert [c.chunk_id for c in built.chunks] == ["0", "1"]  # the second one cut to fit
    assert built.text.startswith("[1] (posts)\n") and built.text.endswith("…")  # no URL to copy
    assert context.assemble(chunks, budget_tokens=10).chunks == []


# Against the real store --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(postgres_url: str) -> dict[str, str]:
    return load_corpus(postgres_url)


@pytest.fixture(scope="module")
def pipeline(postgres_url: str, corpus: dict[str, str]) -> Iterator[Any]:
    from twin_platform.features.query_encoder import default_encoder
    from twin_platform.rag.pipeline import RagPipeline
    from twin_platform.rag.retriever import Retriever
    from twin_platform.serving.deployments import DeploymentStore
    from twin_platform.serving.models import ServedModels
    from twin_platform.storage.postgres import open_pool

    settings = load_settings()
    pool = open_pool(postgres_url, max_size=4)
    models = ServedModels(settings, DeploymentStore(settings.deployments_dir), max_loaded=2)
    yield RagPipeline(
        Retriever(
            pool, default_encoder(settings.embedding_model), ef_search=settings.hnsw_ef_search
        ),
        models,
        settings,
    )
    models.close()
    pool.close()


@pytest.mark.parametrize(
    ("query", "url"),
    [
        (
            "What does Rhea Vance feed her sourdough starter?",
            "https://rhea.example/sourdough",
        ),  # semantic
        (
            "How do you stop several workers migrating the database at once?",
            "https://rhea.example/posts/locks",
        ),
        (
            "zephyr_tokenize",
            "https://github.com/rhea-vance/quillstack",
        ),  # an identifier: the full-text arm
        ("tips for riding a bike in the cold", "https://rhea.example/cycling"),
    ],
)
def test_retrieval_finds_the_right_chunk(
    pipeline: Any, corpus: dict[str, str], query: str, url: str
) -> None:
    trace = Trace(route="test", query=query)
    # Scoped to the corpus's author: other test modules load the sample author into the same store.
    result = pipeline.retrieve(query, trace, author="rhea-vance", k=3)
    # The same text under two URLs ranks equal: either copy may come first.
    expected = {corpus[url], corpus.get(url + "-crosspost")}
    assert result.chunks[0].chunk_id in expected
    assert trace.retrieved[0]["chunk_id"] == result.chunks[0].chunk_id
    assert {"self_query", "expansion", "embed", "search", "rerank"} <= trace.latencies_ms.keys()


@pytest.fixture(scope="module")
def sample_corpus(sample_features: str) -> str:
    """The sample corpus (data/sample) through the real feature assets into the store."""
    return sample_features


@pytest.mark.parametrize(
    ("query", "url"),
    [
        ("Why did Ada Quill stop trusting p50 latency and alert on p99 instead?", "https://adaquill.substack.com/p/why-i-stopped-trusting-p50"),
        ("Which modules are in quillstack and what is the retry budget?", "https://github.com/ada-quill/quillstack"),
        ("How many claims a second does a Postgres job queue with SKIP LOCKED handle?", "https://adaquill.substack.com/p/postgres-is-a-fine-queue"),
        ("How many dashboards did she delete because nobody opened them?", "https://adaquill.substack.com/p/dashboards-nobody-reads"),
        ("How long did it take to move four terabytes of documents?", "https://adaquill.substack.com/p/moving-four-terabytes"),
        ("In a year of on-call numbers, how many of the pages needed a human?", "https://adaquill.substack.com/p/a-year-of-on-call-numbers"),
    ],
)  # fmt: skip
def test_retrieval_finds_known_facts_of_the_sample_corpus(
    pipeline: Any, sample_corpus: str, query: str, url: str
) -> None:
    """Facts listed in data/sample/README.md come back from the document that states them."""
    result = pipeline.retrieve(query, Trace(route="test", query=query), author=sample_corpus, k=3)
    assert url in [c.source_url for c in result.chunks], [c.source_url for c in result.chunks]


def test_author_and_category_filters(pipeline: Any, corpus: dict[str, str]) -> None:
    query = "sourdough flour"
    bob = pipeline.retrieve(query, Trace(route="test", query=query), author="bob-stone", k=5)
    assert bob.chunks and {c.author for c in bob.chunks} == {"bob-stone"}
    assert bob.chunks[0].chunk_id == corpus["https://bob.example/spelt"]
    # Self-query: the author named in the query becomes the filter.
    rhea = pipeline.retrieve(
        "What flour does Rhea Vance use for sourdough?", Trace(route="t", query="q"), k=5
    )
    assert rhea.filters.author == "rhea-vance" and {c.author for c in rhea.chunks} == {"rhea-vance"}
    posts = pipeline.retrieve(
        "workers", Trace(route="t", query="q"), author="rhea-vance", category="posts", k=5
    )
    assert posts.chunks and {c.category for c in posts.chunks} == {"posts"}


def test_cross_posted_text_is_returned_once(pipeline: Any) -> None:
    result = pipeline.retrieve(
        "Postgres advisory locks migrations", Trace(route="t", query="q"), author="rhea-vance", k=10
    )
    lock_texts = [c for c in result.chunks if "advisory locks" in c.content]
    assert len(lock_texts) == 1


def test_answer_uses_the_training_prompt_format(pipeline: Any, corpus: dict[str, str]) -> None:
    """The real SmolLM2 GGUF answers; the prompt is exactly chat_messages(...) with the context."""
    query = "What is the name of Rhea Vance's sourdough starter?"
    trace = Trace(route="test", query=query)
    with pipeline.begin(query, trace, k=2, max_tokens=24) as answering:
        answer = pipeline.generate(answering, trace, max_tokens=24, temperature=0.0)
        counter = answering.lease.model.count_tokens
    assert answer.text.strip() and 0 < answer.completion_tokens <= 24 and answer.prompt_tokens > 50
    top = answering.retrieval.chunks[0]
    assert top.chunk_id == corpus["https://rhea.example/sourdough"]
    budget = pipeline.settings.rag_context_tokens
    context_text = context.assemble(answering.retrieval.chunks, budget, counter).text
    expected = chat_messages(query, "rhea-vance", context_text)
    assert trace.prompt == "\n\n".join(f"<{m['role']}>\n{m['content']}" for m in expected)
    assert trace.model_version.startswith("base:") and trace.answer == answer.text
    with pipeline.begin(query, trace, k=2, max_tokens=24) as again:
        streamed = "".join(pipeline.stream(again, trace, max_tokens=24, temperature=0.0))
    assert streamed == answer.text  # greedy: the same text, streamed
    assert trace.latencies_ms["first_token"] <= trace.latencies_ms["generate"]


# Monitoring --------------------------------------------------------------------------------------


def test_traces_feedback_and_summary(postgres_url: str) -> None:
    from twin_platform.storage.postgres import connect, open_pool

    pool = open_pool(postgres_url, max_size=2)
    writer = TraceWriter(pool)
    route = f"/test-{uuid.uuid4().hex[:8]}"
    totals = [float(t) for t in range(10, 210, 10)]
    traces = [
        Trace(route=route, query=f"q{i}\x00", latencies_ms={"total": t})
        for i, t in enumerate(totals)
    ]
    traces[0].error = "RuntimeError: boom"
    for trace in traces:
        writer.submit(trace)
    writer.submit(traces[1])  # a retry writes nothing twice
    writer.flush()
    with connect(postgres_url) as conn:
        assert (
            conn.execute("SELECT count(*) FROM traces WHERE route = %s", (route,)).fetchone()[0]
            == 20
        )
        add_feedback(conn, traces[1].trace_id, 1, None)
        add_feedback(conn, traces[2].trace_id, -1, "A better answer.")
        with pytest.raises(LookupError):
            add_feedback(conn, uuid.uuid4(), 1, None)
    with connect(postgres_url) as conn:
        summary = summarize(conn, hours=1)
    writer.close()
    pool.close()
    assert summary.by_route[route] == 20 and summary.requests >= 20 and summary.errors >= 1
    if summary.requests == 20:  # alone in the table: the figures are exactly ours
        assert summary.latency_percentiles_ms["total"]["p50"] == pytest.approx(
            statistics.median(totals)
        )
        assert summary.feedback == {"positive": 1, "negative": 1, "corrections": 1}
        assert summary.error_rate == pytest.approx(1 / 20)


def test_api_traffic_asset(postgres_url: str) -> None:
    """The monitoring asset summarises the traces table with percentiles, feedback and a plot."""
    import dagster as dg

    from assets.monitoring import api_error_rate, api_traffic
    from resources import PostgresResource
    from twin_platform.storage.postgres import open_pool

    pool = open_pool(postgres_url, max_size=1)
    writer = TraceWriter(pool)
    for ms in (5.0, 15.0, 25.0):
        writer.submit(
            Trace(route="/asset-test", query="q", latencies_ms={"total": ms, "search": ms / 5})
        )
    writer.close()
    pool.close()
    result = dg.materialize(
        [api_traffic, api_error_rate],
        resources={"postgres": PostgresResource(database_url=postgres_url)},
    )
    assert result.success
    metadata = result.asset_materializations_for_node("api_traffic")[0].metadata
    assert metadata["requests"].value >= 3
    assert "| total |" in metadata["latency_by_stage"].value
    assert metadata["traffic"].value.startswith("![traffic](data:image/png;base64,")
    assert result.get_asset_check_evaluations()[0].check_name == "api_error_rate"
