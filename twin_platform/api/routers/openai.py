"""OpenAI-compatible `POST /v1/chat/completions` and `GET /v1/models`, so the `openai` SDK and
litellm work unchanged (`base_url=http://HOST:PORT/v1`).

The last user message is the request: it gets the twin's retrieval and the training prompt format;
earlier user/assistant turns are kept, the client's system messages are replaced by the twin's own
(the one training used). `author`, `k` and `rag` are extensions, sent with the SDK's `extra_body`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import APIRouter, HTTPException

from twin_platform.api.deps import KeyDep, Serving, ServingDep, check_limits
from twin_platform.api.prompt_fit import prepare
from twin_platform.api.routers.rag import ERRORS
from twin_platform.api.schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    ChoiceMessage,
    ErrorResponse,
    ModelCard,
    ModelList,
    Source,
    Usage,
)
from twin_platform.api.streaming import BoundedStreamingResponse, check_deadline
from twin_platform.api.tracing import finish_stream, record_error, traced
from twin_platform.monitoring import Trace
from twin_platform.rag.generation import Messages
from twin_platform.rag.pipeline import Answering
from twin_platform.serving.models import BASE, UnknownModel

router = APIRouter(prefix="/v1", tags=["openai"])
STARTED = int(time.time())


@router.get("/models", response_model=ModelList, responses=ERRORS)
def list_models(serving: ServingDep, key: KeyDep) -> ModelList:
    """The base model and one model per deployed author (`twin-<author>`)."""
    return ModelList(
        data=[
            ModelCard(id=e.id, created=STARTED, version=e.version, author=e.author)
            for e in serving.models.catalog()
        ]
    )


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses=ERRORS
    | {
        404: {"model": ErrorResponse, "description": "No such model."},
        200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE with stream"},
    },
)
def chat_completions(
    body: ChatCompletionRequest, serving: ServingDep, key: KeyDep
) -> ChatCompletion | BoundedStreamingResponse:
    """A chat completion from the twin `model` names (`twin-<author>`: that author's twin, retrieval
    filtered to their writing), with retrieval on the last user message."""
    try:
        author = serving.models.author_of(body.model) or body.author
    except UnknownModel as exc:
        raise HTTPException(404, str(exc)) from exc
    max_tokens = body.max_completion_tokens or body.max_tokens
    check_limits(serving, body.k, max_tokens)
    users = [i for i, m in enumerate(body.messages) if m.role == "user"]
    if not users:
        raise HTTPException(422, "messages need at least one user message")
    last = users[-1]
    query = body.messages[last].content
    history: Messages = [m.model_dump() for m in body.messages[:last] if m.role != "system"]
    pipeline = serving.pipeline
    started = time.perf_counter()
    trace = Trace(route="/v1/chat/completions", query=query, api_key_id=key)
    completion_id = f"chatcmpl-{trace.trace_id.hex}"
    with traced(serving, trace, submit=not body.stream, started=started):
        answering = pipeline.begin(
            query,
            trace,
            author=author,
            k=body.k,
            max_tokens=max_tokens,
            history=history,
            retrieve=body.rag and bool(query.strip()),
            base_model=body.model == BASE,  # `author` then filters retrieval only
        )
        prepare(answering, trace, max_tokens, serving.settings)
        if body.stream:  # the stream closes `answering` and submits the trace when it ends
            deltas = pipeline.stream(
                answering, trace, max_tokens=max_tokens, temperature=body.temperature
            )
            limit_s = serving.settings.serve_generation_timeout_s
            stream = _Stream(serving, trace, completion_id, body.model, started, limit_s)
            return BoundedStreamingResponse(
                stream.chunks(answering, deltas), limit_s, media_type="text/event-stream"
            )
        with answering:
            answer = pipeline.generate(
                answering, trace, max_tokens=max_tokens, temperature=body.temperature
            )
    cited = {answering.sources[n - 1] for n in answer.cited}
    return ChatCompletion(
        id=completion_id,
        created=int(time.time()),
        model=body.model,
        choices=[
            Choice(message=ChoiceMessage(content=answer.text), finish_reason=answer.finish_reason)
        ],
        usage=Usage(
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            total_tokens=answer.prompt_tokens + answer.completion_tokens,
        ),
        sources=[Source.from_chunk(c, c.source_url in cited) for c in answering.retrieval.chunks],
    )


def _chunk(completion_id: str, model: str, delta: dict[str, str], finish: str | None = None) -> str:
    payload = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(payload)}\n\n"


@dataclass(frozen=True)
class _Stream:
    """What a streamed completion's chunks carry besides the deltas."""

    serving: Serving
    trace: Trace
    completion_id: str
    model: str
    started: float
    limit_s: float

    def chunks(self, answering: Answering, deltas: Iterator[str]) -> Iterator[str]:
        """OpenAI's chunks, then `[DONE]`. Closed early (the client left, the response's time
        limit), it still ends the generation, releases the model and submits the trace."""
        deadline = time.monotonic() + self.limit_s
        tail = [_chunk(self.completion_id, self.model, {}, finish="stop")]
        try:
            yield _chunk(self.completion_id, self.model, {"role": "assistant", "content": ""})
            for delta in deltas:
                check_deadline(deadline, self.limit_s)
                yield _chunk(self.completion_id, self.model, {"content": delta})
        except Exception as exc:
            record_error(self.trace, exc)
            timed_out = isinstance(exc, TimeoutError)
            error = {
                "message": str(exc) if timed_out else "generation failed",
                "type": "timeout" if timed_out else "server_error",
                "code": 504 if timed_out else 500,
            }
            tail = [f"data: {json.dumps({'error': error})}\n\n"]
        finally:
            deltas.close()  # type: ignore[attr-defined]  # ends the generation: the model is free
            answering.close()
            finish_stream(self.serving, self.trace, self.started)
        yield from [*tail, "data: [DONE]\n\n"]
