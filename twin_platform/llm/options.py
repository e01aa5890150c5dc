"""What a chat model backend needs, built once by an entry point from `Settings` and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from twin_platform.settings import Settings

Batching = Literal["auto", "on", "off"]

LOCAL_PROVIDER = "twin-local"
DEFAULT_MODEL = f"{LOCAL_PROVIDER}/smollm2"
BUNDLED_NAMES = ("smollm2", "smollm2-135m", "default")


def is_bundled(model: str) -> bool:
    """Whether `model` names the bundled SmolLM2-135M (too small to write instructions or judge)."""
    provider, _, name = model.partition("/")
    return provider == LOCAL_PROVIDER and name in BUNDLED_NAMES


@dataclass(frozen=True)
class LLMOptions:
    """`model` is `twin-local/<name>` (in process) or any litellm model string. `api_base`, `api_key`
    and `timeout_s` apply to litellm; `threads` (llama.cpp), `batching`, `max_batch_size`,
    `cuda_graphs`, `compile_step`, `adapters`, `max_adapter_rank` (transformers) and `n_ctx` to the
    in-process runtime."""

    model: str = DEFAULT_MODEL
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)  # repr=False: never in logs or tracebacks
    timeout_s: float = 120.0
    threads: int = 1
    batching: Batching = "auto"
    max_batch_size: int = 64
    cuda_graphs: bool = True
    compile_step: bool = True
    adapters: int = 0  # LoRA adapters the batched runtime can hold beside the base (serving)
    max_adapter_rank: int = 64
    n_ctx: int = 2048

    @classmethod
    def from_settings(cls, settings: Settings, model: str | None = None) -> LLMOptions:
        """`TWIN_LLM_*` options for `model` (default `TWIN_LLM_MODEL`). The configured api base and key
        belong to the configured model: another model given here goes to its provider's default."""
        own = model is None or model == settings.llm_model
        key = settings.llm_api_key
        return cls(
            model=model or settings.llm_model,
            api_base=settings.llm_api_base if own else None,
            api_key=key.get_secret_value() if own and key is not None else None,
            timeout_s=settings.llm_timeout_s,
            threads=settings.llm_threads,
            batching=settings.llm_batching,
            max_batch_size=settings.llm_max_batch_size,
            cuda_graphs=settings.llm_cuda_graphs,
            compile_step=settings.llm_compile,
        )
