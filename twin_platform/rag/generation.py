"""Generation with the deployed model, prompted exactly as training formats its examples.

The model served is, in order: `TWIN_SERVE_MODEL` when set; the registry's `production` version of
`TWIN_SERVE_MODEL_NAME`; else the bundled base model (SmolLM2-135M GGUF on llama.cpp). Messages come
from `twin_platform.prompts.chat_messages` and are rendered by the model's own chat template, the same
function and template the SFT/DPO datasets go through: no train/serve skew.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from twin_platform.prompts import chat_messages
from twin_platform.settings import Settings

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class ServedModel:
    """`path` None means the bundled GGUF; `version` is what traces record."""

    path: str | None
    version: str


def resolve_served_model(settings: Settings) -> ServedModel:
    if settings.serve_model:
        return ServedModel(settings.serve_model, f"override:{settings.serve_model}")
    from twin_platform.registry import ModelRegistry

    deployed = ModelRegistry.from_settings(settings).resolve(
        settings.serve_model_name, alias="production"
    )
    if deployed is not None:
        return ServedModel(str(deployed.path), f"{deployed.name}:{deployed.version}")
    return ServedModel(None, "base:SmolLM2-135M-Instruct.Q4_1.gguf")


def build_messages(
    request: str, author: str | None, context: str | None, history: Messages | None = None
) -> Messages:
    """The training format (system, user with context); earlier turns of a chat go before the last user turn."""
    messages = chat_messages(request, author or "the author", context or None)
    return [messages[0], *(history or []), messages[1]]


def render_prompt(messages: Messages) -> str:
    """A readable copy of the prompt for traces (the model applies its own template)."""
    return "\n\n".join(f"<{m['role']}>\n{m['content']}" for m in messages)


class Generator:
    """The served model, loaded on first use (API start stays fast; /ready reports it)."""

    def __init__(self, served: ServedModel) -> None:
        self.served = served
        self._model: Any = None
        self._load_lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def model(self) -> Any:
        with self._load_lock:
            if self._model is None:
                from twin_platform.llm.local import get_local_model

                self._model = get_local_model(self.served.path)
        return self._model

    def count_tokens(self, text: str) -> int:
        return int(self.model.count_tokens(text))

    def generate(self, messages: Messages, max_tokens: int, temperature: float) -> Any:
        """A ChatResult(text, prompt_tokens, completion_tokens, finish_reason)."""
        return self.model.chat(messages, max_tokens=max_tokens, temperature=temperature)

    def stream(self, messages: Messages, max_tokens: int, temperature: float) -> Iterator[str]:
        return self.model.stream(messages, max_tokens=max_tokens, temperature=temperature)
