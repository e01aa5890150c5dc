"""One evaluation of an author's candidate twin on held-out documents: `evaluate(...)`.

The Dagster `eval_report` asset and `twin eval` both call it. Models are loaded one at a time
(perplexity, then answers for style, then the DPO reward terms) and freed before the next, so
peak memory is one model's.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twin_platform.datasets.artifact import DatasetArtifact
from twin_platform.datasets.build import read_samples
from twin_platform.datasets.curation import Sample
from twin_platform.evaluation.answers import generate_answers
from twin_platform.evaluation.judge import JudgeCase, judge_answers
from twin_platform.evaluation.preference import (
    PreferencePair,
    log_likelihoods,
    reward_accuracy,
)
from twin_platform.evaluation.report import (
    CitationScores,
    EvalReport,
    ModelEval,
    RetrievalScores,
)
from twin_platform.evaluation.scoring import load_scorer, perplexity, score_answers
from twin_platform.evaluation.style import style_similarity
from twin_platform.features.embedding import Embedder
from twin_platform.llm.chat import ChatModel
from twin_platform.monitoring import Trace
from twin_platform.prompts import chat_messages
from twin_platform.rag import context as ctx
from twin_platform.rag.citations import resolve
from twin_platform.rag.generation import build_messages
from twin_platform.rag.pipeline import RagPipeline

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ModelRef:
    """A model to score: `name` is what reports show (registry name:version, or the path)."""

    role: str
    name: str
    path: str


@dataclass(frozen=True)
class EvalOptions:
    max_answer_tokens: int = 512  # scored tokens per held-out row (a document's opening)
    max_new_tokens: int = 64  # generated per answer (style, citations, judge)
    style_prompts: int = 8
    rag_prompts: int = 4
    retrieval_k: int = 5
    rag_context_tokens: int = 512
    min_heldout_documents: int = 3
    beta: float = 0.1  # the DPO beta the candidate was trained with


@dataclass(frozen=True)
class Judge:
    model: ChatModel
    tiny: bool


def evaluate(
    author: str,
    instructions: DatasetArtifact,
    preferences: DatasetArtifact | None,
    models: Sequence[ModelRef],
    embedder: Embedder,
    pipeline: RagPipeline | None,
    options: EvalOptions = EvalOptions(),
    judge: Judge | None = None,
    progress: Progress = lambda message: None,
) -> EvalReport:
    started = time.perf_counter()
    test = read_samples(instructions)["test"]
    documents = len({s.document_id for s in test})
    candidate = next(m for m in models if m.role == "candidate")
    report = EvalReport(author, candidate.name, documents, len(test))
    if documents < options.min_heldout_documents:
        report.problems.append(
            f"{author} has {documents} held-out documents, fewer than the"
            f" {options.min_heldout_documents} an evaluation needs: add documents (the held-out"
            " share is TWIN_DATASET_HELDOUT_SHARE)"
        )
        report.seconds = time.perf_counter() - started
        return report
    rows = [(chat_messages(s.instruction, author), s.answer) for s in test]
    style_rows = _one_per_document(test)[: options.style_prompts]
    pairs = _pairs(preferences)
    rag = _rag_prompts(pipeline, author, test, options) if pipeline is not None else []
    answers: dict[str, list[str]] = {}
    likelihoods = {}
    for ref in models:
        progress(f"scoring {ref.role} ({ref.name})")
        scorer = load_scorer(ref.path)
        result = ModelEval(ref.role, ref.name)
        result.perplexity = perplexity(score_answers(*scorer, rows, options.max_answer_tokens))
        if ref.role != "sft":
            prompts = [chat_messages(s.instruction, author) for s in style_rows]
            if ref.role == "candidate":
                prompts += [messages for _, messages, _ in rag]
            generated = generate_answers(scorer, prompts, options.max_new_tokens)
            answers[ref.role] = generated.texts
            result.style_similarity = style_similarity(
                embedder, generated.texts[: len(style_rows)], [s.answer for s in style_rows]
            )
            result.tokens_per_second = generated.tokens_per_second
            result.seconds_per_answer = generated.seconds_per_answer
        if ref.role in ("sft", "candidate") and pairs:
            likelihoods[ref.role] = log_likelihoods(scorer, pairs, options.max_answer_tokens)
        report.models[ref.role] = result
        del scorer
        gc.collect()
    if {"sft", "candidate"} <= likelihoods.keys():
        report.reward = reward_accuracy(likelihoods["candidate"], likelihoods["sft"], options.beta)
    if pipeline is not None:
        report.retrieval = _retrieval(pipeline, author, test, options.retrieval_k)
    rag_answers = answers.get("candidate", [])[len(style_rows) :]
    report.citations = _citations(rag, rag_answers)
    report.samples = [
        {
            "prompt": s.instruction,
            "author": s.answer[:300],
            "base": answers.get("base", [""] * len(style_rows))[i][:300],
            "candidate": answers.get("candidate", [""] * len(style_rows))[i][:300],
        }
        for i, s in enumerate(style_rows[:4])
    ]
    if judge is not None:
        for role in ("candidate", "production"):
            if role in answers:
                progress(f"judging {role} with {judge.model.name}")
                cases = _judge_cases(style_rows, answers[role], rag, rag_answers, role)
                report.judge[role] = judge_answers(judge.model, cases, judge.tiny)
    report.seconds = time.perf_counter() - started
    return report


def _one_per_document(samples: Sequence[Sample]) -> list[Sample]:
    """The first row of each held-out document: its title or opening, the natural prompt."""
    seen: set[str] = set()
    firsts = []
    for sample in samples:
        if sample.document_id not in seen:
            seen.add(sample.document_id)
            firsts.append(sample)
    return firsts


def _pairs(preferences: DatasetArtifact | None) -> list[PreferencePair]:
    if preferences is None:
        return []
    return [
        PreferencePair(row["prompt"], row["chosen"][0]["content"], row["rejected"][0]["content"])
        for row in preferences.read_split("test")
    ]


def _rag_prompts(
    pipeline: RagPipeline, author: str, test: Sequence[Sample], options: EvalOptions
) -> list[tuple[Sample, list[dict[str, str]], list[str]]]:
    """(row, messages with retrieved context, the passages' source URLs in context order)."""
    prompts = []
    for sample in _one_per_document(test)[: options.rag_prompts]:
        retrieval = pipeline.retrieve(
            sample.instruction, Trace(route="eval", query=sample.instruction), author=author
        )
        context = ctx.assemble(retrieval.chunks, options.rag_context_tokens)
        messages = build_messages(sample.instruction, author, context.text)
        prompts.append((sample, messages, [c.source_url for c in context.chunks]))
    return prompts


def _retrieval(
    pipeline: RagPipeline, author: str, test: Sequence[Sample], k: int
) -> RetrievalScores:
    """Each held-out document's opening prompt as a query; its own document is the target."""
    hits, reciprocal = 0, 0.0
    queries = _one_per_document(test)
    for sample in queries:
        found = pipeline.retrieve(
            sample.instruction, Trace(route="eval", query=sample.instruction), author=author, k=k
        )
        ranks = [
            i for i, c in enumerate(found.chunks, start=1) if c.document_id == sample.document_id
        ]
        if ranks:
            hits += 1
            reciprocal += 1 / ranks[0]
    n = max(len(queries), 1)
    return RetrievalScores(hits / n, reciprocal / n, len(queries), k)


def _citations(
    rag: Sequence[tuple[Sample, list[dict[str, str]], list[str]]], texts: Sequence[str]
) -> CitationScores | None:
    if not texts:
        return None
    clean, dropped = 0, 0
    for (_, _, urls), text in zip(rag, texts, strict=False):
        _, citations = resolve(text, urls)
        clean += not citations.dropped
        dropped += len(citations.dropped)
    return CitationScores(len(texts), clean / len(texts), dropped)


def _judge_cases(
    style_rows: Sequence[Sample],
    answers: Sequence[str],
    rag: Sequence[tuple[Sample, list[dict[str, str]], list[str]]],
    rag_answers: Sequence[str],
    role: str,
) -> list[JudgeCase]:
    cases = [
        JudgeCase(s.instruction, answer, s.answer)
        for s, answer in zip(style_rows, answers, strict=False)
    ]
    if role == "candidate":
        cases += [
            JudgeCase(s.instruction, answer, s.answer, [m["content"] for m in messages[1:]])
            for (s, messages, _), answer in zip(rag, rag_answers, strict=False)
        ]
    return cases
