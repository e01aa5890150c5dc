"""The RAG pipeline: retrieval steps then generation, each timed and recorded on the request's trace.

The one orchestration of every route: `prompt` (retrieve, then messages in the training format, with
chat history) then `generate` or `stream`; `answer` is the two in one call. Routes only translate
their request and response shapes.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from twin_platform.llm.chat import ChatResult
from twin_platform.monitoring import Trace
from twin_platform.rag import context as ctx
from twin_platform.rag import expansion, rerank, self_query
from twin_platform.rag.generation import Generator, Messages, build_messages, render_prompt
from twin_platform.rag.retriever import Retriever
from twin_platform.settings import Settings
from twin_platform.storage.feature_store.records import Chunk

PROMPT_RESERVE_TOKENS = 160  # system prompt, template and request around the context


@contextmanager
def timed(trace: Trace, stage: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        trace.latencies_ms[stage] = round((time.perf_counter() - started) * 1000, 2)


@dataclass
class Retrieval:
    filters: self_query.QueryFilters
    queries: list[str]
    chunks: list[Chunk]  # reranked, best first, at most k


@dataclass
class Prompt:
    retrieval: Retrieval  # empty when retrieval was off
    messages: Messages


@dataclass
class Answer:
    retrieval: Retrieval
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


class RagPipeline:
    def __init__(
        self, retriever: Retriever, generator: Generator | None, settings: Settings
    ) -> None:
        self.retriever = retriever
        self.generator = generator
        self.settings = settings
        self.reranker = rerank.get_reranker(settings.rag_reranker)

    # Retrieval -----------------------------------------------------------------------------------

    def retrieve(
        self,
        query: str,
        trace: Trace,
        *,
        author: str | None = None,
        category: str | None = None,
        k: int | None = None,
    ) -> Retrieval:
        s = self.settings
        llm = (
            self.generator.model
            if self.generator and "llm" in (s.rag_self_query, s.rag_expansion_mode)
            else None
        )
        with timed(trace, "self_query"):
            if s.rag_self_query == "llm" and llm is not None:
                found = self_query.extract_filters_llm(query, self.retriever.known_authors(), llm)
            else:
                found = self_query.extract_filters(query, self.retriever.known_authors())
            filters = self_query.QueryFilters(
                author=author or found.author, category=category or found.category
            )
        with timed(trace, "expansion"):
            queries = expansion.expand(query, s.rag_expansions, s.rag_expansion_mode, llm)
        with timed(trace, "embed"):
            embeddings = self.retriever.encode(queries)
        with timed(trace, "search"):
            candidates = self.retriever.search(queries, filters, embeddings)
        with timed(trace, "rerank"):
            chunks = rerank.rerank(query, candidates, k or s.rag_k, self.reranker)
        trace.author = filters.author
        trace.expansions = queries
        trace.retrieved = [
            {"chunk_id": c.chunk_id, "score": round(c.score, 5), "source_url": c.source_url}
            for c in chunks
        ]
        return Retrieval(filters, queries, chunks)

    # Generation ----------------------------------------------------------------------------------

    def _persona(self, retrieval: Retrieval) -> str | None:
        """The author to write as: the filter, else the author most retrieved, else the default."""
        if retrieval.filters.author:
            return retrieval.filters.author
        authors = Counter(c.author for c in retrieval.chunks)
        return authors.most_common(1)[0][0] if authors else self.settings.rag_default_author

    def prompt(
        self,
        query: str,
        trace: Trace,
        *,
        author: str | None = None,
        category: str | None = None,
        k: int | None = None,
        max_tokens: int | None = None,
        history: Messages | None = None,
        retrieve: bool = True,
    ) -> Prompt:
        """Retrieval (unless off), then context within the token budget, then messages in the
        training format; earlier chat turns go before the query."""
        assert self.generator is not None, "generation is off"
        if retrieve:
            retrieval = self.retrieve(query, trace, author=author, category=category, k=k)
            context = self._context(retrieval, trace, max_tokens or self.settings.gen_max_tokens)
        else:
            retrieval = Retrieval(self_query.QueryFilters(author=author, category=category), [], [])
            context = None
        messages = build_messages(query, self._persona(retrieval), context, history)
        trace.prompt = render_prompt(messages)
        trace.model_version = self.generator.served.version
        return Prompt(retrieval, messages)

    def _context(self, retrieval: Retrieval, trace: Trace, max_tokens: int) -> str:
        """The retrieved chunks that fit the model's context beside the prompt and the answer."""
        assert self.generator is not None, "generation is off"
        budget = max(
            64,
            min(
                self.settings.rag_context_tokens,
                self.generator.model.n_ctx - max_tokens - PROMPT_RESERVE_TOKENS,
            ),
        )
        with timed(trace, "context"):
            return ctx.assemble(retrieval.chunks, budget, self.generator.count_tokens).text

    def generate(
        self,
        messages: Messages,
        trace: Trace,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> ChatResult:
        """The whole answer; the trace holds it and its token counts."""
        assert self.generator is not None, "generation is off"
        with timed(trace, "generate"):
            result = self.generator.model.chat(
                messages,
                max_tokens=max_tokens or self.settings.gen_max_tokens,
                temperature=self.settings.gen_temperature if temperature is None else temperature,
            )
        trace.answer = result.text
        trace.prompt_tokens, trace.completion_tokens = (
            result.prompt_tokens,
            result.completion_tokens,
        )
        return result

    def answer(
        self,
        query: str,
        trace: Trace,
        *,
        author: str | None = None,
        category: str | None = None,
        k: int | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        history: Messages | None = None,
        retrieve: bool = True,
    ) -> Answer:
        prompt = self.prompt(
            query,
            trace,
            author=author,
            category=category,
            k=k,
            max_tokens=max_tokens,
            history=history,
            retrieve=retrieve,
        )
        result = self.generate(
            prompt.messages, trace, max_tokens=max_tokens, temperature=temperature
        )
        return Answer(
            prompt.retrieval,
            result.text,
            result.prompt_tokens,
            result.completion_tokens,
            result.finish_reason,
        )

    def stream(
        self,
        messages: Messages,
        trace: Trace,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Iterator[str]:
        """Text deltas; on exhaustion the trace holds the answer, token counts and time to first token."""
        assert self.generator is not None, "generation is off"
        model = self.generator.model
        started = time.perf_counter()
        parts: list[str] = []
        deltas = model.stream(
            messages,
            max_tokens=max_tokens or self.settings.gen_max_tokens,
            temperature=self.settings.gen_temperature if temperature is None else temperature,
        )
        for delta in deltas:
            if not parts:
                trace.latencies_ms["first_token"] = round((time.perf_counter() - started) * 1000, 2)
            parts.append(delta)
            yield delta
        trace.latencies_ms["generate"] = round((time.perf_counter() - started) * 1000, 2)
        trace.answer = "".join(parts)
        trace.prompt_tokens = sum(model.count_tokens(m["content"]) for m in messages)
        trace.completion_tokens = model.count_tokens(trace.answer)
