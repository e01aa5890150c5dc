"""`POST /retrieve` (retrieval only) and `POST /rag` (retrieval + answer, optionally streamed)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from twin_platform.api.deps import KeyDep, ServingDep, check_limits
from twin_platform.api.schemas import (
    ErrorResponse,
    Filters,
    RagRequest,
    RagResponse,
    RetrieveRequest,
    RetrieveResponse,
    Source,
    Usage,
)
from twin_platform.api.tracing import finish_stream, record_error, traced
from twin_platform.monitoring import Trace
from twin_platform.rag.pipeline import Retrieval

router = APIRouter(tags=["rag"])

ERRORS = {
    401: {"model": ErrorResponse},
    413: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
    429: {"model": ErrorResponse},
}


def _retrieve_response(trace: Trace, retrieval: Retrieval) -> RetrieveResponse:
    return RetrieveResponse(
        trace_id=trace.trace_id,
        sources=[Source.from_chunk(c) for c in retrieval.chunks],
        queries=retrieval.queries,
        filters=Filters(**retrieval.filters.model_dump()),
        latencies_ms=trace.latencies_ms,
    )


@router.post("/retrieve", response_model=RetrieveResponse, responses=ERRORS)
def retrieve(body: RetrieveRequest, serving: ServingDep, key: KeyDep) -> RetrieveResponse:
    """The retrieval path alone: self-query, expansion, hybrid search, rerank. No generation."""
    check_limits(serving, body.k)
    with traced(serving, Trace(route="/retrieve", query=body.query, api_key_id=key)) as trace:
        retrieval = serving.pipeline.retrieve(
            body.query, trace, author=body.author, category=body.category, k=body.k
        )
    return _retrieve_response(trace, retrieval)


@router.post(
    "/rag",
    response_model=RagResponse,
    responses=ERRORS
    | {200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE with stream"}},
)
def rag(body: RagRequest, serving: ServingDep, key: KeyDep) -> RagResponse | StreamingResponse:
    """Answer in the author's voice from their retrieved writing, with sources and a trace id.

    With `stream`, the response is server-sent events, each `data:` a JSON object: `{"type": "sources",
    ...}` first, then `{"type": "delta", "text": ...}` as tokens come, then `{"type": "done", ...}`.
    """
    check_limits(serving, body.k, body.max_tokens)
    started = time.perf_counter()
    pipeline = serving.pipeline
    trace = Trace(route="/rag", query=body.query, api_key_id=key)
    if not body.generate:
        with traced(serving, trace):
            retrieval = pipeline.retrieve(
                body.query, trace, author=body.author, category=body.category, k=body.k
            )
        return RagResponse(
            **_retrieve_response(trace, retrieval).model_dump(), answer=None, model=None, usage=None
        )
    with traced(serving, trace, submit=not body.stream, started=started):
        prompt = pipeline.prompt(
            body.query,
            trace,
            author=body.author,
            category=body.category,
            k=body.k,
            max_tokens=body.max_tokens,
        )
        result = None
        if not body.stream:
            result = pipeline.generate(
                prompt.messages, trace, max_tokens=body.max_tokens, temperature=body.temperature
            )
    head = _retrieve_response(trace, prompt.retrieval)
    if result is None:  # streamed: the trace is submitted when the stream ends
        deltas = pipeline.stream(
            prompt.messages, trace, max_tokens=body.max_tokens, temperature=body.temperature
        )
        return StreamingResponse(
            _events(serving, trace, head.model_dump(mode="json"), deltas, started),
            media_type="text/event-stream",
        )
    usage = Usage(
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        total_tokens=result.prompt_tokens + result.completion_tokens,
    )
    return RagResponse(
        **head.model_dump(),
        answer=result.text,
        model=serving.generator.served.version,
        usage=usage,
    )


def _sse(payload: dict[str, object]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def _events(
    serving: ServingDep,
    trace: Trace,
    head: dict[str, object],
    deltas: Iterator[str],
    started: float,
) -> Iterator[str]:
    yield _sse({"type": "sources", **head})
    try:
        for delta in deltas:
            yield _sse({"type": "delta", "text": delta})
        yield _sse(
            {
                "type": "done",
                "trace_id": str(trace.trace_id),
                "latencies_ms": trace.latencies_ms,
                "model": serving.generator.served.version,
            }
        )
    except Exception as exc:  # the status line is sent already: report in-band, record in the trace
        record_error(trace, exc)
        yield _sse(
            {"type": "error", "message": "generation failed", "trace_id": str(trace.trace_id)}
        )
    finally:
        finish_stream(serving, trace, started)
