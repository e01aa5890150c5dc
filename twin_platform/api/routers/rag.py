"""`POST /retrieve` (retrieval only) and `POST /rag` (retrieval + answer, optionally streamed)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from fastapi import APIRouter

from twin_platform.api.deps import KeyDep, Serving, ServingDep, check_limits
from twin_platform.api.prompt_fit import prepare
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
from twin_platform.api.streaming import BoundedStreamingResponse, check_deadline
from twin_platform.api.tracing import finish_stream, record_error, traced
from twin_platform.monitoring import Trace
from twin_platform.rag.pipeline import Answering, Retrieval

router = APIRouter(tags=["rag"])

ERRORS = {
    400: {"model": ErrorResponse, "description": "The body is not JSON."},
    401: {"model": ErrorResponse, "description": "Missing or invalid API key."},
    413: {"model": ErrorResponse, "description": "Body over TWIN_API_MAX_BODY_BYTES."},
    422: {"model": ErrorResponse, "description": "Invalid request."},
    429: {"model": ErrorResponse, "description": "Over the key's rate limit; see Retry-After."},
}


def _retrieve_response(
    trace: Trace, retrieval: Retrieval, cited: list[str] | None = None
) -> RetrieveResponse:
    return RetrieveResponse(
        trace_id=trace.trace_id,
        sources=[Source.from_chunk(c, c.source_url in (cited or [])) for c in retrieval.chunks],
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
def rag(
    body: RagRequest, serving: ServingDep, key: KeyDep
) -> RagResponse | BoundedStreamingResponse:
    """Answer in the author's voice from their retrieved writing, with sources and a trace id.

    The author's deployed twin answers (the request's author, else the one the query names).
    With `stream`, the response is server-sent events, each `data:` a JSON object: `{"type": "sources",
    ...}` first, then `{"type": "delta", "text": ...}` as tokens come, then `{"type": "done", ...}`
    with the sources cited.
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
        answering = pipeline.begin(
            body.query,
            trace,
            author=body.author,
            category=body.category,
            k=body.k,
            max_tokens=body.max_tokens,
            history=[turn.model_dump() for turn in body.history],
        )
        prepare(answering, trace, body.max_tokens, serving.settings)
        if body.stream:  # the stream closes `answering` and submits the trace when it ends
            deltas = pipeline.stream(
                answering, trace, max_tokens=body.max_tokens, temperature=body.temperature
            )
            head = _retrieve_response(trace, answering.retrieval).model_dump(mode="json")
            limit_s = serving.settings.serve_generation_timeout_s
            return BoundedStreamingResponse(
                _events(serving, trace, head, answering, deltas, started, limit_s),
                limit_s,
                media_type="text/event-stream",
            )
        with answering:
            answer = pipeline.generate(
                answering, trace, max_tokens=body.max_tokens, temperature=body.temperature
            )
    usage = Usage(
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        total_tokens=answer.prompt_tokens + answer.completion_tokens,
    )
    cited = [answering.sources[n - 1] for n in answer.cited]
    return RagResponse(
        **_retrieve_response(trace, answering.retrieval, cited).model_dump(),
        answer=answer.text,
        model=answering.lease.version,
        usage=usage,
        cited=cited,
    )


def _sse(payload: dict[str, object]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def _events(
    serving: Serving,
    trace: Trace,
    head: dict[str, object],
    answering: Answering,
    deltas: Iterator[str],
    started: float,
    limit_s: float,
) -> Iterator[str]:
    """Sources, deltas, then done (or error). Closed early (the client left, the response's time
    limit), it still ends the generation, releases the model and submits the trace."""
    deadline = time.monotonic() + limit_s
    try:
        yield _sse({"type": "sources", **head})
        for delta in deltas:
            check_deadline(deadline, limit_s)
            yield _sse({"type": "delta", "text": delta})
        cited = [answering.sources[n - 1] for n in answering.citations.cited]
        final = {"type": "done", "trace_id": str(trace.trace_id), "cited": cited}
    except Exception as exc:  # the status line is sent already: report in-band, record in the trace
        record_error(trace, exc)
        message = str(exc) if isinstance(exc, TimeoutError) else "generation failed"
        final = {"type": "error", "message": message, "trace_id": str(trace.trace_id)}
    finally:
        deltas.close()  # type: ignore[attr-defined]  # ends the generation: the model is free
        answering.close()
        finish_stream(serving, trace, started)  # before `done`: feedback may follow at once
    if final["type"] == "done":
        final |= {"latencies_ms": trace.latencies_ms, "model": answering.lease.version}
    yield _sse(final)
