"""Generation with the deployed model, prompted exactly as training formats its examples.

The model served is, in order: `TWIN_SERVE_MODEL` when set; the registry's `production` version of
`TWIN_SERVE_MODEL_NAME`; else the bundled base model (SmolLM2-135M GGUF on llama.cpp). Whichever it
is, it is a `ChatModel` from `open_chat_model`: in this process, or a remote OpenAI-compatible server
(`TWIN_SERVE_MODEL=openai/NAME` + `TWIN_SERVE_API_BASE`) or provider through litellm, behind the same
routes. Messages come from `twin_platform.prompts.chat_messages` and are rendered by the model's own
chat template, the same function and template the SFT/DPO datasets go through: no train/serve skew.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path

from twin_platform.llm.chat import ChatModel
from twin_platform.llm.factory import open_chat_model
from twin_platform.llm.local import BUNDLED_GGUF
from twin_platform.llm.options import DEFAULT_MODEL, LOCAL_PROVIDER, LLMOptions
from twin_platform.prompts import chat_messages
from twin_platform.settings import Settings

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class ServedModel:
    """What to open; `version` is what traces and responses record."""

    options: LLMOptions
    version: str


def resolve_served_model(settings: Settings) -> ServedModel:
    if settings.serve_model:
        model = served_model_string(settings.serve_model, settings.serve_api_base)
        return ServedModel(_serve_options(settings, model), f"override:{settings.serve_model}")
    from twin_platform.registry import ModelRegistry

    deployed = ModelRegistry.from_settings(settings).resolve(
        settings.serve_model_name, alias="production"
    )
    if deployed is not None:
        return ServedModel(
            _serve_options(settings, f"{LOCAL_PROVIDER}/{deployed.path}"),
            f"{deployed.name}:{deployed.version}",
        )
    return ServedModel(_serve_options(settings, DEFAULT_MODEL), f"base:{BUNDLED_GGUF}")


def served_model_string(value: str, api_base: str | None) -> str:
    """`TWIN_SERVE_MODEL` as a model string. With an api base, or named by a litellm provider
    (`openai/...`), it is litellm's; a local path or Hugging Face id runs in process (an HF id whose
    organisation is also a provider, `openai/gpt-oss-20b`, is written `twin-local/openai/gpt-oss-20b`)."""
    if value.startswith(f"{LOCAL_PROVIDER}/") or api_base:
        return value
    if not Path(value).exists():
        from twin_platform.llm.litellm_model import is_provider_model

        if is_provider_model(value):
            return value
    return f"{LOCAL_PROVIDER}/{value}"


def _serve_options(settings: Settings, model: str) -> LLMOptions:
    """The runtime knobs of `TWIN_LLM_*`; the server and key of `TWIN_SERVE_*`."""
    key = settings.serve_api_key
    return replace(
        LLMOptions.from_settings(settings, model),
        api_base=settings.serve_api_base,
        api_key=key.get_secret_value() if key is not None else None,
    )


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
    """The served model, opened on first use (API start stays fast; /ready reports it)."""

    def __init__(self, served: ServedModel) -> None:
        self.served = served
        self._model: ChatModel | None = None
        self._load_lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def model(self) -> ChatModel:
        with self._load_lock:
            if self._model is None:
                self._model = open_chat_model(self.served.options)
            return self._model

    def count_tokens(self, text: str) -> int:
        return self.model.count_tokens(text)
