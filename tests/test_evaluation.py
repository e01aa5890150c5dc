"""Evaluation's parts: the held-out split, template instructions, citations, the gate, the judge,
and the registry's promotion history."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin_platform.datasets.extracts import SourceDocument
from twin_platform.datasets.holdout import is_heldout, split_documents
from twin_platform.datasets.instructions import template_samples
from twin_platform.evaluation.gate import GateMargins, gate
from twin_platform.evaluation.judge import JudgeCase, judge_answers
from twin_platform.evaluation.report import EvalReport, ModelEval, RetrievalScores
from twin_platform.llm.litellm_model import LiteLLMChatModel
from twin_platform.llm.options import LLMOptions
from twin_platform.rag.citations import CitationFilter, resolve
from twin_platform.registry import PRODUCTION, ModelRegistry, RegistryError, model_name
from twin_platform.servers.process import free_port


def document(
    doc_id: str, content: str, category: str = "articles", title: str | None = "T"
) -> SourceDocument:
    return SourceDocument(
        doc_id, "ada", category, "linkedin", f"https://x.test/{doc_id}", title, content, "en"
    )


def test_heldout_split_is_stable_when_documents_are_added() -> None:
    first = [document(f"d{i}", "text") for i in range(200)]
    more = first + [document(f"e{i}", "text") for i in range(200)]
    _, heldout = split_documents(first, 0.15, seed=42)
    _, heldout_after = split_documents(more, 0.15, seed=42)
    assert {d.document_id for d in heldout} <= {d.document_id for d in heldout_after}
    assert 15 <= len(heldout) <= 45  # about 15% of 200
    assert [is_heldout(f"d{i}", 0.15, 42) for i in range(50)] != [
        is_heldout(f"d{i}", 0.15, 7) for i in range(50)
    ]  # the seed moves the line


def test_template_instructions_cover_every_word_of_the_document() -> None:
    article = document(
        "a1",
        "Intro paragraph about queues. It is short.\n\n## Why Postgres\n\nPostgres has SKIP LOCKED."
        "\n\n## What breaks\n\nVacuum falls behind when workers hold transactions open.",
        title="Postgres is a fine queue",
    )
    samples = template_samples(article, max_chars=1200)
    assert samples[0].instruction == 'Write an article titled "Postgres is a fine queue".'
    assert 'Write the section "Why Postgres" of your article' in samples[1].instruction
    text = " ".join(s.answer for s in samples)
    for sentence in ("It is short.", "SKIP LOCKED.", "transactions open."):
        assert sentence in text
    assert {s.document_id for s in samples} == {"a1"}
    post = template_samples(
        document("p1", "Shipped incremental embeddings today.", "posts", None), 1200
    )
    assert (
        post[0].instruction == "Write a LinkedIn post about: Shipped incremental embeddings today"
    )


def test_citations_keep_retrieved_sources_and_drop_inventions() -> None:
    urls = ["https://a.test/1", "https://b.test/2"]
    text, cited = resolve(
        "As I wrote [1] and [4], see https://made.up/x or https://a.test/1.", urls
    )
    assert "[1](https://a.test/1)" in text and "[4]" not in text and "made.up" not in text
    assert "https://a.test/1." in text
    assert cited.cited == [1] and cited.dropped == ["[4]", "https://made.up/x"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=6))
def test_citations_stream_like_the_whole(cuts: list[int]) -> None:
    answer = (
        "Measure first [2], then argue [9]. My notes: https://b.test/2 and https://x.test/y [1]."
    )
    urls = ["https://a.test/1", "https://b.test/2"]
    whole, _ = resolve(answer, urls)
    bounds = sorted({0, len(answer), *(c % len(answer) for c in itertools.accumulate(cuts))})
    streamed = CitationFilter(urls)
    out = "".join(streamed.feed(answer[a:b]) for a, b in itertools.pairwise(bounds))
    assert out + streamed.flush() == whole


def report(
    candidate: float, base: float, production: float | None, style: float = 0.5
) -> EvalReport:
    r = EvalReport("ada", "twin-ada:2", heldout_documents=5, heldout_rows=9)
    r.models = {
        "base": ModelEval("base", "b", perplexity=base, style_similarity=0.4),
        "candidate": ModelEval("candidate", "c", perplexity=candidate, style_similarity=style),
    }
    if production is not None:
        r.models["production"] = ModelEval(
            "production", "p", perplexity=production, style_similarity=0.5
        )
    r.retrieval = RetrievalScores(hit_rate=0.9, mrr=0.8, queries=5, k=5)
    return r


def verdicts(r: EvalReport, promoted_retrieval: float | None = None) -> dict[str, bool]:
    return {c.name: c.passed for c in gate(r, GateMargins(), promoted_retrieval)}


def test_gate_compares_with_base_and_production() -> None:
    assert all(verdicts(report(30.0, 50.0, None)).values())
    assert all(verdicts(report(30.0, 50.0, 31.0)).values())
    worse = verdicts(report(32.0, 50.0, 31.0))
    assert not worse["perplexity_not_worse_than_production"] and worse["perplexity_below_base"]
    assert not verdicts(report(51.0, 50.0, None))["perplexity_below_base"]
    assert not verdicts(report(30.0, 50.0, None, style=0.3))["style_not_worse"]
    assert not verdicts(report(30.0, 50.0, None), promoted_retrieval=1.0)["retrieval_unchanged"]
    thin = report(30.0, 50.0, None)
    thin.heldout_documents = 1
    assert not verdicts(thin)["enough_heldout_data"]


def test_a_judge_that_never_answers_is_missing_not_zero() -> None:
    dead = LiteLLMChatModel(
        LLMOptions(model="openai/judge", api_base=f"http://127.0.0.1:{free_port()}/v1", timeout_s=2)
    )
    cases = [JudgeCase("Write about queues.", "Queues are fine.", "Postgres is a fine queue.")]
    scores = judge_answers(dead, cases, tiny=False, retries=1)
    assert scores.scores["accuracy"] is None and scores.scores["style"] is None
    assert scores.missing["accuracy"] == 1 and scores.missing["style"] == 1


def test_promotion_history_and_rollback(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    name = model_name("ada")
    assert name == "twin-ada"
    versions = []
    for i in range(3):
        folder = tmp_path / f"m{i}"
        folder.mkdir()
        (folder / "config.json").write_text(f'{{"i": {i}}}')
        versions.append(registry.register(folder, name=name, manifest={}).version)
    with pytest.raises(RegistryError, match="no earlier version"):
        registry.rollback(name)
    registry.set_alias(name, PRODUCTION, versions[0], reason="passed the gate")
    registry.set_alias(name, PRODUCTION, versions[2], reason="forced", forced=True)
    assert registry.rollback(name).version == versions[0]
    history = registry.history(name)
    assert [m["version"] for m in history] == [versions[0], versions[2], versions[0]]
    assert history[1]["forced"] and history[2]["reason"] == "rollback"
