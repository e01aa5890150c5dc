"""`open_chat_model(options)`: the one way to get a `ChatModel`.

`twin-local/smollm2` is the bundled SmolLM2-135M-Instruct GGUF and `twin-local/<path>` any GGUF file
or Hugging Face folder, both in this process (loaded once per process, shared by every caller);
any other string is a litellm model.
"""

from __future__ import annotations

import threading

from twin_platform.llm.chat import ChatModel
from twin_platform.llm.local import LocalChatModel, bundled_gguf_path
from twin_platform.llm.options import LOCAL_PROVIDER, LLMOptions, is_bundled

_local_models: dict[str, LocalChatModel] = {}
_local_lock = threading.Lock()


def local_model_path(model: str) -> str | None:
    """The file or folder a `twin-local/<name>` string names; None for any other string."""
    prefix = f"{LOCAL_PROVIDER}/"
    if not model.startswith(prefix):
        return None
    return str(bundled_gguf_path()) if is_bundled(model) else model.removeprefix(prefix)


def open_chat_model(options: LLMOptions, shared: bool = True) -> ChatModel:
    """The backend for `options.model`. An in-process model is loaded on first use and cached by
    path: one copy of the weights per process, with the runtime options of its first caller.
    `shared=False` gives a model of its own, which the caller closes (the API's swaps do)."""
    path = local_model_path(options.model)
    if path is None:
        from twin_platform.llm.litellm_model import LiteLLMChatModel

        return LiteLLMChatModel(options)
    if not shared:
        return LocalChatModel.from_options(path, options)
    with _local_lock:
        if path not in _local_models:
            _local_models[path] = LocalChatModel.from_options(path, options)
        return _local_models[path]
