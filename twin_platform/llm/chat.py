"""The one LLM interface of the platform: datasets, evaluation and serving all talk to a `ChatModel`.

Two backends implement it: `local.LocalChatModel` (the model in this process, on llama.cpp or
transformers) and `litellm_model.LiteLLMChatModel` (any server or provider litellm reaches).
`factory.open_chat_model` picks one from a model string.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Messages = Sequence[dict[str, str]]


@dataclass
class ChatResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


class ChatModel(Protocol):
    """A chat model: messages in, text out (whole or as deltas), plus what prompt budgets need."""

    name: str
    n_ctx: int  # context length in tokens, prompt and answer together

    def chat(
        self,
        messages: Messages,
        *,
        max_tokens: int,
        temperature: float,
        stop: list[str] | None = None,
        json_schema: dict[str, Any] | None = None,
        seed: int | None = None,
    ) -> ChatResult:
        """One completion; `json_schema` constrains the output where the backend can, so callers
        still validate it."""
        ...

    def stream(
        self,
        messages: Messages,
        *,
        max_tokens: int,
        temperature: float,
        stop: list[str] | None = None,
    ) -> Iterator[str]:
        """Text deltas as they are generated; closing the iterator early ends the request."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def close(self) -> None:
        """Free what the model holds (weights, threads); it answers no more calls."""
        ...
