"""The litellm backend: any model string litellm knows (`openai/gpt-4o-mini`, `anthropic/...`,
`ollama/llama3`, or `openai/NAME` + `api_base` for vLLM, SGLang, llama-server or another twin API).

litellm is imported when the first model opens (seconds), never at module import.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

from twin_platform.llm.chat import ChatResult, Messages
from twin_platform.llm.options import LLMOptions


def import_litellm() -> ModuleType:
    """litellm, quiet. Its import fetches the model cost map from GitHub unless
    LITELLM_LOCAL_MODEL_COST_MAP is set, which the platform's processes set (see `twin_platform.
    servers.supervisor.PROCESS_ENV`): litellm has no other way to skip it."""
    import litellm

    litellm.suppress_debug_info = True
    return litellm


def is_provider_model(model: str) -> bool:
    """Whether `model` starts with a litellm provider (`openai/...`, `ollama/...`)."""
    providers = {getattr(p, "value", p) for p in import_litellm().provider_list}
    return model.split("/", 1)[0] in providers


class LiteLLMChatModel:
    """A model behind litellm. Calls are not retried here: callers retry with their own budget."""

    def __init__(self, options: LLMOptions) -> None:
        self._litellm = import_litellm()
        self.options = options
        self.name = options.model
        self.n_ctx = self._context_length()
        self._kwargs: dict[str, Any] = {
            "model": options.model,
            "api_base": options.api_base,
            "timeout": options.timeout_s,
            "drop_params": True,  # a parameter the backend lacks (seed, response_format) is dropped
            "num_retries": 0,
        }
        if options.api_key is not None:
            self._kwargs["api_key"] = options.api_key
        elif options.api_base:  # self-hosted servers often need no key; the client wants one
            self._kwargs["api_key"] = "none"

    def _context_length(self) -> int:
        """litellm's figure for known models; the configured one for servers it cannot know."""
        try:
            info = self._litellm.get_model_info(self.options.model)
        except Exception:
            return self.options.n_ctx
        return int(info.get("max_input_tokens") or self.options.n_ctx)

    def chat(
        self,
        messages: Messages,
        *,
        max_tokens: int = 256,
        temperature: float = 0.7,
        stop: list[str] | None = None,
        json_schema: dict[str, Any] | None = None,
        seed: int | None = None,
    ) -> ChatResult:
        """`json_schema` travels as an OpenAI `response_format`; backends without structured output
        ignore it."""
        extra: dict[str, Any] = {}
        if json_schema is not None:
            extra["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": json_schema, "strict": False},
            }
        if seed is not None:
            extra["seed"] = seed
        response = self._litellm.completion(
            messages=list(messages),
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop,
            **self._kwargs,
            **extra,
        )
        choice = response.choices[0]
        usage = getattr(response, "usage", None)
        return ChatResult(
            text=choice.message.content or "",
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            finish_reason=choice.finish_reason or "stop",
        )

    def stream(
        self,
        messages: Messages,
        *,
        max_tokens: int = 256,
        temperature: float = 0.7,
        stop: list[str] | None = None,
    ) -> Iterator[str]:
        chunks = self._litellm.completion(
            messages=list(messages),
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop,
            stream=True,
            **self._kwargs,
        )
        try:
            for chunk in chunks:
                delta = chunk.choices[0].delta.content if chunk.choices else None
                if delta:
                    yield delta
        finally:  # a reader that leaves early (a client gone) frees the server's slot
            close = getattr(getattr(chunks, "completion_stream", None), "close", None)
            if close is not None:
                close()

    def close(self) -> None:
        """Nothing is held here: the server owns the model."""

    def count_tokens(self, text: str) -> int:
        """litellm's tokenizer for the model (tiktoken for models it does not know: an estimate)."""
        try:
            return int(self._litellm.token_counter(model=self.options.model, text=text))
        except Exception:
            return max(1, len(text) // 4) if text else 0
