"""The RAG pipeline: retrieval steps then generation, each timed and recorded on the request's trace.

The one orchestration of every route: `begin` (retrieve, lease the author's model, then messages in
the training format, with chat history) then `generate` or `stream`, whose answers have their
citations resolved. Routes only translate their request and response shapes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from twin_platform.llm.chat import ChatModel
from twin_platform.monitoring import Trace
from twin_platform.rag import context as ctx
from twin_platform.rag import expansion, rerank, self_query
from twin_platform.rag.citations import CitationFilter
from twin_platform.rag.generation import Messages, build_messages, render_prompt
from twin_platform.rag.retriever import Retriever
from twin_platform.serving.models import Lease, ServedModels
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
class Answering:
    """A request between retrieval and its answer: the prompt, and the model leased to answer it.

    Close it (or use it as a context manager) when the answer is done: the lease keeps the model
    loaded, which a streamed answer needs for as long as the stream lasts.
    """

    retrieval: Retrieval  # empty when retrieval was off
    messages: Messages
    lease: Lease
    sources: list[str]  # the source URL of each numbered passage in the prompt, in order
    citations: CitationFilter
    _models: ServedModels

    def close(self) -> None:
        self._models.release(self.lease)

    def __enter__(self) -> Answering:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Answer:
    text: str  # with citations turned into links and invented ones dropped
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    cited: list[int]  # 1-based numbers of the passages cited


class RagPipeline:
    def __init__(
        self, retriever: Retriever, models: ServedModels | None, settings: Settings
    ) -> None:
        self.retriever = retriever
        self.models = models
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
        if self.models is not None and "llm" in (s.rag_self_query, s.rag_expansion_mode):
            with self.models.lease(None) as lease:
                return self._retrieve(query, trace, author, category, k, lease.model)
        return self._retrieve(query, trace, author, category, k, None)

    def _retrieve(
        self,
        query: str,
        trace: Trace,
        author: str | None,
        category: str | None,
        k: int | None,
        llm: ChatModel | None,
    ) -> Retrieval:
        s = self.settings
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

    # Answering -----------------------------------------------------------------------------------

    def begin(
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
        base_model: bool = False,
    ) -> Answering:
        """Retrieval (unless off), the author's model leased (the base model with `base_model`),
        then the retrieved passages that fit its context beside the prompt and the answer, in the
        training format; earlier chat turns go before the query. The author is the request's, else
        the one the query names, else the default author."""
        assert self.models is not None, "generation is off"
        if retrieve:
            retrieval = self.retrieve(query, trace, author=author, category=category, k=k)
        else:
            retrieval = Retrieval(self_query.QueryFilters(author=author, category=category), [], [])
        persona = retrieval.filters.author or self.settings.rag_default_author
        lease = self.models.acquire(None if base_model else persona)
        try:
            context = None
            if retrieval.chunks:
                context = self._context(retrieval, trace, lease, max_tokens)
            messages = build_messages(query, persona, context.text if context else None, history)
        except BaseException:
            self.models.release(lease)
            raise
        trace.prompt = render_prompt(messages)
        trace.model_version = lease.version
        sources = [c.source_url for c in context.chunks] if context else []
        return Answering(retrieval, messages, lease, sources, CitationFilter(sources), self.models)

    def _context(
        self, retrieval: Retrieval, trace: Trace, lease: Lease, max_tokens: int | None
    ) -> ctx.Context:
        """The retrieved chunks that fit the model's context beside the prompt and the answer."""
        answer = max_tokens or self.settings.gen_max_tokens
        budget = max(
            64,
            min(
                self.settings.rag_context_tokens, lease.model.n_ctx - answer - PROMPT_RESERVE_TOKENS
            ),
        )
        with timed(trace, "context"):
            return ctx.assemble(retrieval.chunks, budget, lease.model.count_tokens)

    def generate(
        self,
        answering: Answering,
        trace: Trace,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Answer:
        """The whole answer, its citations resolved; the trace holds it and its token counts."""
        with timed(trace, "generate"):
            result = answering.lease.model.chat(
                answering.messages,
                max_tokens=max_tokens or self.settings.gen_max_tokens,
                temperature=self.settings.gen_temperature if temperature is None else temperature,
            )
        citations = answering.citations
        text = citations.feed(result.text) + citations.flush()
        trace.answer = text
        trace.prompt_tokens, trace.completion_tokens = (
            result.prompt_tokens,
            result.completion_tokens,
        )
        return Answer(
            text,
            result.prompt_tokens,
            result.completion_tokens,
            result.finish_reason,
            list(citations.cited),
        )

    def stream(
        self,
        answering: Answering,
        trace: Trace,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Iterator[str]:
        """Text deltas, citations resolved as they stream; on exhaustion the trace holds the
        answer, token counts and time to first token, and `answering.citations.cited` the sources
        cited."""
        model = answering.lease.model
        citations = answering.citations
        started = time.perf_counter()
        parts: list[str] = []
        deltas = model.stream(
            answering.messages,
            max_tokens=max_tokens or self.settings.gen_max_tokens,
            temperature=self.settings.gen_temperature if temperature is None else temperature,
        )
        try:
            for delta in deltas:
                if "first_token" not in trace.latencies_ms:
                    trace.latencies_ms["first_token"] = round(
                        (time.perf_counter() - started) * 1000, 2
                    )
                text = citations.feed(delta)
                if text:
                    parts.append(text)
                    yield text
            if tail := citations.flush():
                parts.append(tail)
                yield tail
        finally:
            deltas.close()  # type: ignore[attr-defined]  # a client that leaves frees the model
        trace.latencies_ms["generate"] = round((time.perf_counter() - started) * 1000, 2)
        trace.answer = "".join(parts)
        trace.prompt_tokens = sum(model.count_tokens(m["content"]) for m in answering.messages)
        trace.completion_tokens = model.count_tokens(trace.answer)
