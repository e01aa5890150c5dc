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

from fastapi import APIRouter, HTTPException
from fastapi.responses import StreamingResponse

from twin_platform.api.deps import KeyDep, Serving, ServingDep, check_limits
from twin_platform.api.routers.rag import ERRORS
from twin_platform.api.schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    ChoiceMessage,
    ModelCard,
    ModelList,
    Source,
    Usage,
)
from twin_platform.api.tracing import finish_stream, record_error, traced
from twin_platform.monitoring import Trace
from twin_platform.rag.generation import Messages

router = APIRouter(prefix="/v1", tags=["openai"])
STARTED = int(time.time())


def model_ids(serving: Serving) -> set[str]:
    return {serving.settings.serve_model_name, serving.generator.served.version}


@router.get("/models", response_model=ModelList, responses=ERRORS)
def list_models(serving: ServingDep, key: KeyDep) -> ModelList:
    version = serving.generator.served.version
    return ModelList(
        data=[ModelCard(id=serving.settings.serve_model_name, created=STARTED, version=version)]
    )


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses=ERRORS
    | {404: {"description": "unknown model"}, 200: {"content": {"text/event-stream": {}}}},
)
def chat_completions(
    body: ChatCompletionRequest, serving: ServingDep, key: KeyDep
) -> ChatCompletion | StreamingResponse:
    """A chat completion from the twin, with retrieval on the last user message."""
    if body.model not in model_ids(serving):
        raise HTTPException(
            404, f"model {body.model!r} not found; GET /v1/models lists the served model"
        )
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
        prompt = pipeline.prompt(
            query,
            trace,
            author=body.author,
            k=body.k,
            max_tokens=max_tokens,
            history=history,
            retrieve=body.rag and bool(query.strip()),
        )
        result = None
        if not body.stream:
            result = pipeline.generate(
                prompt.messages, trace, max_tokens=max_tokens, temperature=body.temperature
            )
    if result is None:  # streamed: the trace is submitted when the stream ends
        deltas = pipeline.stream(
            prompt.messages, trace, max_tokens=max_tokens, temperature=body.temperature
        )
        return StreamingResponse(
            _chunks(serving, trace, completion_id, body.model, deltas, started),
            media_type="text/event-stream",
        )
    return ChatCompletion(
        id=completion_id,
        created=int(time.time()),
        model=body.model,
        choices=[
            Choice(message=ChoiceMessage(content=result.text), finish_reason=result.finish_reason)
        ],
        usage=Usage(
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            total_tokens=result.prompt_tokens + result.completion_tokens,
        ),
        sources=[Source.from_chunk(c) for c in prompt.retrieval.chunks],
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


def _chunks(
    serving: Serving,
    trace: Trace,
    completion_id: str,
    model: str,
    deltas: Iterator[str],
    started: float,
) -> Iterator[str]:
    try:
        yield _chunk(completion_id, model, {"role": "assistant", "content": ""})
        for delta in deltas:
            yield _chunk(completion_id, model, {"content": delta})
        yield _chunk(completion_id, model, {}, finish="stop")
    except Exception as exc:
        record_error(trace, exc)
        error = {"error": {"message": "generation failed", "type": "server_error", "code": 500}}
        yield f"data: {json.dumps(error)}\n\n"
    finally:
        yield "data: [DONE]\n\n"
        finish_stream(serving, trace, started)
