"""Every LLM call of the platform goes through litellm, with the model chosen by `TWIN_LLM_MODEL`.

Any litellm model string works (`openai/gpt-4o-mini`, `anthropic/...`, `ollama/...`, `openai/NAME`
with `TWIN_LLM_API_BASE` for vLLM or another OpenAI-compatible server). The embedded default,
`twin-local/smollm2`, is the bundled SmolLM2-135M-Instruct served in this process by
`twin_platform.llm.local`, registered as a litellm custom provider; `twin-local/<path>` serves any GGUF
file or Hugging Face folder the same way.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

PROVIDER = "twin-local"
DEFAULT_MODEL = f"{PROVIDER}/smollm2"
BUNDLED_ALIASES = {"smollm2", "smollm2-135m", "default"}

_registered = threading.Lock()
_handler: Any = None


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


def local_model_path(name: str) -> str | None:
    """The model a `twin-local/<name>` string names; None for the bundled GGUF."""
    return None if name in BUNDLED_ALIASES else name


def _json_schema(optional_params: dict[str, Any]) -> dict[str, Any] | None:
    """The schema of an OpenAI-style `response_format`, whichever of its two shapes was sent."""
    response_format = optional_params.get("response_format") or {}
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_schema":
        return (response_format.get("json_schema") or {}).get("schema") or {"type": "object"}
    if response_format.get("type") == "json_object":
        return response_format.get("schema") or {"type": "object"}
    return None


def _handler_class() -> type:
    """Built on first use: subclassing litellm's CustomLLM needs litellm imported (seconds)."""
    import litellm
    from litellm import CustomLLM

    from twin_platform.llm.local import get_local_model

    class LocalProvider(CustomLLM):
        """Serves `twin-local/...` from the in-process model (one call at a time, or batched on a GPU)."""

        def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            params = kwargs.get("optional_params") or {}
            result = get_local_model(local_model_path(model)).chat(
                messages,
                max_tokens=int(
                    params.get("max_tokens") or params.get("max_completion_tokens") or 256
                ),
                temperature=float(params.get("temperature", 0.7)),
                stop=_stop_list(params.get("stop")),
                json_schema=_json_schema(params),
                seed=params.get("seed"),
            )
            response: litellm.ModelResponse = kwargs["model_response"]
            response.model = f"{PROVIDER}/{model}"
            response.choices[0].message.content = result.text  # type: ignore[union-attr]
            response.choices[0].finish_reason = result.finish_reason
            response.usage = litellm.Usage(  # type: ignore[attr-defined]
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
                total_tokens=result.prompt_tokens + result.completion_tokens,
            )
            return response

        def streaming(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Iterator[Any]:
            params = kwargs.get("optional_params") or {}
            deltas = get_local_model(local_model_path(model)).stream(
                messages,
                max_tokens=int(
                    params.get("max_tokens") or params.get("max_completion_tokens") or 256
                ),
                temperature=float(params.get("temperature", 0.7)),
                stop=_stop_list(params.get("stop")),
            )
            for delta in deltas:
                yield {
                    "text": delta,
                    "is_finished": False,
                    "finish_reason": "",
                    "usage": None,
                    "index": 0,
                }
            yield {
                "text": "",
                "is_finished": True,
                "finish_reason": "stop",
                "usage": None,
                "index": 0,
            }

        async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(self.completion, model, messages, *args, **kwargs)

        async def astreaming(
            self, model: str, messages: list, *args: Any, **kwargs: Any
        ) -> AsyncIterator[Any]:
            chunks = self.streaming(model, messages, *args, **kwargs)
            done = object()
            while (chunk := await asyncio.to_thread(next, chunks, done)) is not done:
                yield chunk

    return LocalProvider


def _stop_list(stop: Any) -> list[str] | None:
    if not stop:
        return None
    return [stop] if isinstance(stop, str) else list(stop)


def register() -> None:
    """Import litellm (without fetching its cost map) and add the `twin-local` provider, once."""
    global _handler
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    with _registered:
        if _handler is not None:
            return
        import litellm

        litellm.suppress_debug_info = True
        _handler = _handler_class()()
        litellm.custom_provider_map = [
            *(p for p in litellm.custom_provider_map if p["provider"] != PROVIDER),
            {"provider": PROVIDER, "custom_handler": _handler},
        ]
        from litellm.utils import custom_llm_setup

        custom_llm_setup()


def complete(
    messages: list[dict[str, str]],
    *,
    model: str | None = None,
    api_base: str | None = None,
    max_tokens: int = 256,
    temperature: float = 0.7,
    json_schema: dict[str, Any] | None = None,
    timeout_s: float | None = None,
    seed: int | None = None,
) -> Completion:
    """One chat completion through litellm. `model` None: the `TWIN_LLM_MODEL` setting.

    `json_schema` is sent as an OpenAI `response_format`; backends without structured output ignore
    it (`drop_params`), so callers still validate what comes back.
    """
    from twin_platform.settings import load_settings

    register()
    import litellm

    kwargs: dict[str, Any] = {}
    settings = load_settings()
    if model is None:
        model, api_base = settings.llm_model, api_base or settings.llm_api_base
    timeout_s = timeout_s or settings.llm_timeout_s
    if settings.llm_api_key is not None:
        kwargs["api_key"] = settings.llm_api_key.get_secret_value()
    elif api_base:  # self-hosted OpenAI-compatible servers often need no key; the client wants one
        kwargs["api_key"] = "none"
    if json_schema is not None:
        kwargs["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": json_schema, "strict": False},
        }
    if seed is not None:
        kwargs["seed"] = seed
    response = litellm.completion(
        model=model,
        messages=messages,
        api_base=api_base,
        max_tokens=max_tokens,
        temperature=temperature,
        timeout=timeout_s,
        drop_params=True,
        num_retries=0,  # the callers retry with their own budget and cache
        **kwargs,
    )
    choice = response.choices[0]
    usage = getattr(response, "usage", None)
    return Completion(
        text=choice.message.content or "",
        model=model,
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        finish_reason=choice.finish_reason or "stop",
    )
