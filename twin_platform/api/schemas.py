"""Request and response models: the API's documentation and its first line of input validation.

Static bounds here are the hard ceilings; the configured limits (TWIN_API_MAX_K, ...) are checked in
the routes, so an operator can tighten them without changing the schema.
"""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from twin_platform.storage.feature_store.records import Chunk

Category = Literal["articles", "posts", "repositories"]
MAX_QUERY_CHARS = 4000
SNIPPET_CHARS = 300
# An author key as registration accepts it (collection.sources.AUTHOR_NAME): anything else names no
# author, and a NUL byte would reach Postgres as a query parameter.
AUTHOR_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class Strict(BaseModel):
    """A request model: unknown fields and loose types (`true` for 1, `1` for true, `"1"` for 1)
    are refused, as the schema says."""

    model_config = ConfigDict(extra="forbid", strict=True)


def integral(value: object) -> object:
    """An integer as JSON Schema counts them: `14.0` is one, `true` is not (Python says True == 1).
    Runs before the strict check, which then sees a plain int."""
    if isinstance(value, bool):
        raise ValueError("must be an integer")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class RetrieveRequest(Strict):
    query: str = Field(
        min_length=1, max_length=MAX_QUERY_CHARS, description="What to search for or ask."
    )
    author: str | None = Field(
        default=None, pattern=AUTHOR_PATTERN, description="Only this author's writing."
    )
    category: Category | None = Field(default=None, description="Only this category.")
    k: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Chunks to return (default TWIN_RAG_K; at most TWIN_API_MAX_K).",
    )

    @field_validator("k", mode="before")
    @classmethod
    def _integral(cls, value: object) -> object:
        return integral(value)


class Turn(Strict):
    """An earlier turn of the conversation."""

    role: Literal["user", "assistant"]
    content: str = Field(max_length=MAX_QUERY_CHARS * 4)


class RagRequest(RetrieveRequest):
    history: list[Turn] = Field(
        default_factory=list, max_length=64, description="Earlier turns, oldest first."
    )
    stream: bool = Field(
        default=False, description="Server-sent events: sources, then text deltas, then done."
    )
    generate: bool = Field(default=True, description="False: retrieval only, no answer.")
    max_tokens: int | None = Field(
        default=None, ge=1, le=8192, description="At most TWIN_API_MAX_NEW_TOKENS."
    )
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)

    @field_validator("k", "max_tokens", mode="before")
    @classmethod
    def _integral(cls, value: object) -> object:
        return integral(value)


class Source(BaseModel):
    """A retrieved chunk as responses show it: its text cut to a snippet."""

    chunk_id: str
    document_id: str
    author: str
    category: str
    source_url: str
    score: float
    snippet: str
    cited: bool = Field(default=False, description="The answer cites this source.")

    @classmethod
    def from_chunk(cls, chunk: Chunk, cited: bool = False) -> Source:
        return cls(
            **chunk.model_dump(include={"chunk_id", "document_id", "author", "category"}),
            source_url=chunk.source_url,
            score=round(chunk.score, 5),
            snippet=chunk.content[:SNIPPET_CHARS],
            cited=cited,
        )


class Filters(BaseModel):
    author: str | None
    category: str | None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class RetrieveResponse(BaseModel):
    trace_id: UUID
    sources: list[Source]
    queries: list[str] = Field(description="The original query and its expansions.")
    filters: Filters
    latencies_ms: dict[str, float]


class RagResponse(RetrieveResponse):
    answer: str | None = Field(
        description="Citations are links `[n](url)` to the numbered sources; invented ones are dropped."
    )
    model: str | None = Field(description="The model version that answered.")
    usage: Usage | None
    cited: list[str] = Field(default_factory=list, description="URLs of the sources cited.")


class FeedbackRequest(Strict):
    trace_id: UUID = Field(strict=False)  # JSON has no UUID type: a string is parsed
    rating: Literal[-1, 1] = Field(description="1 good, -1 bad.")
    correction: str | None = Field(
        default=None,
        max_length=20_000,
        description="A better answer. With rating -1 it waits for review, then may become a"
        " preference pair.",
    )

    @field_validator("rating", mode="before")
    @classmethod
    def _integral(cls, value: object) -> object:
        return integral(value)


class FeedbackResponse(BaseModel):
    feedback_id: int
    status: Literal["pending", "ignored"] = Field(
        description="pending: a correction awaiting review; ignored: a rating only (no dataset"
        " reads it)."
    )


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    database: bool
    embedding_model: bool
    generation_model: bool
    model: str
    reason: str | None = Field(default=None, description="Why it is not ready.")


class ErrorBody(BaseModel):
    """OpenAI's error object, with the HTTP status as `code`."""

    message: str
    type: str
    param: str | None = None
    code: int


class ErrorResponse(BaseModel):
    error: ErrorBody


# OpenAI-compatible chat ---------------------------------------------------------------------------


class ChatMessage(BaseModel):
    model_config = ConfigDict(strict=True)

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=MAX_QUERY_CHARS * 4)


class ChatCompletionRequest(BaseModel):
    """OpenAI's fields that matter here; unknown fields are ignored, as OpenAI clients send many."""

    model_config = ConfigDict(extra="ignore", strict=True)

    model: str = Field(max_length=200)
    messages: list[ChatMessage] = Field(
        min_length=1,
        max_length=64,
        description="At least one user message: the last one is the request.",
        json_schema_extra={
            "contains": {"type": "object", "properties": {"role": {"const": "user"}}}
        },
    )
    stream: bool = False
    max_tokens: int | None = Field(
        default=None, ge=1, le=8192, description="At most TWIN_API_MAX_NEW_TOKENS."
    )
    max_completion_tokens: int | None = Field(
        default=None, ge=1, le=8192, description="At most TWIN_API_MAX_NEW_TOKENS."
    )
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    n: Literal[1] = 1
    # Twin extensions (extra_body with the openai SDK)
    author: str | None = Field(default=None, pattern=AUTHOR_PATTERN)
    k: int | None = Field(default=None, ge=1, le=100, description="At most TWIN_API_MAX_K.")
    rag: bool = Field(default=True, description="Retrieve context for the last user message.")

    @field_validator("n", "max_tokens", "max_completion_tokens", "k", mode="before")
    @classmethod
    def _integral(cls, value: object) -> object:
        return integral(value)

    @model_validator(mode="after")
    def _has_a_user_message(self) -> ChatCompletionRequest:
        if not any(m.role == "user" for m in self.messages):
            raise ValueError("messages need at least one user message")
        return self


class ChoiceMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: ChoiceMessage
    finish_reason: str


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    sources: list[Source] = Field(
        default_factory=list, description="Twin extension: retrieved chunks."
    )


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "twin-platform"
    version: str
    author: str | None = Field(default=None, description="Whose twin it is; none: the base model.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def error_payload(status: int, message: str, kind: str) -> dict[str, Any]:
    """OpenAI's error shape, so its SDKs raise the matching error with this message."""
    return {"error": {"message": message, "type": kind, "param": None, "code": status}}
