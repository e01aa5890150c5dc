"""Batched decoding of concurrent requests on a static KV cache, one CUDA graph per batch size.

Each request gets a slot: one row of a preallocated K/V cache of `max_context` tokens per layer. A
background thread prefills a new request's prompt into its slot (eager, one request at a time), then
decodes every active slot together, one token per slot per step. A step is the model's own forward
pass (transformers modules, `SlotCache` as its `past_key_values`) plus sampling, on tensors whose
shapes never change: on CUDA each batch-size bucket (1, 2, 4, ..., `max_batch_size`) is captured once
as a CUDA graph and replayed, so a step costs one graph launch and one read of the new tokens, not a
Python walk over every layer. This is gpt-fast's recipe, kept inside the transformers model so any
causal LM that calls `past_key_values.update` works.

Slots are handed out lowest first and a step runs the smallest bucket that covers the highest active
slot. Greedy (temperature 0) is the argmax, exactly as `generate`; sampling draws from the top 50
tokens at each request's own temperature. Callers get their request's generated ids as they grow.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from twin_platform.llm.adapter_bank import AdapterBank

TOP_K = 50
ATTENTION = "twin_slots"  # the attention implementation the batcher gives the model
# Prompt tokens prefilled (packed into one forward pass) between two decode steps: new requests join
# without stalling the running ones for long.
PREFILL_TOKENS_PER_STEP = 4096


class BatchingError(RuntimeError):
    """The batching runtime refused or failed a request."""


def slot_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    cu_seq_lens_q: torch.Tensor | None = None,
    **_: Any,
) -> tuple[torch.Tensor, None]:
    """The batcher's attention, as transformers' attention interface calls it.

    Prefill (prompts packed into one sequence, `cu_seq_lens_q` their boundaries): causal attention
    within each prompt, through SDPA's fused kernels. Decode (one new token per row, `attention_mask`
    hiding what lies past each row's position, if any): each key/value head is read once for the query heads
    that share it (grouped-query attention without copies; transformers' SDPA path repeats the keys
    and values per query head when given a mask).
    """
    rows, heads, length, dim = query.shape
    scale = scaling or dim**-0.5
    if length > 1:
        bounds = [0, length] if cu_seq_lens_q is None else cu_seq_lens_q.tolist()
        parts = [
            torch.nn.functional.scaled_dot_product_attention(
                query[:, :, start:end],
                key[:, :, start:end],
                value[:, :, start:end],
                is_causal=True,
                scale=scale,
                enable_gqa=True,
            )
            for start, end in itertools.pairwise(bounds)
        ]
        return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None
    kv_heads = key.shape[1]
    grouped = query.view(rows, kv_heads, heads // kv_heads, dim)
    scores = torch.matmul(grouped, key.transpose(-1, -2)) * scale
    if attention_mask is not None:  # None: every key is the row's own (`generate` without padding)
        scores = scores.masked_fill(~attention_mask.view(rows, 1, 1, -1), float("-inf"))
    weights = scores.float().softmax(dim=-1).to(value.dtype)
    output = torch.matmul(weights, value)  # rows, kv heads, group, dim
    return output.reshape(rows, 1, heads, dim), None


class SlotCache:
    """The K/V cache of `slots` sequences, given to the model as `past_key_values`.

    The model calls `update` once per layer with the new keys and values. In prefill (prompts packed
    into one sequence, each from position 0) each prompt's keys are written at the front of its slot
    and the packed keys are returned (the mask keeps each prompt to itself). In a decode step (rows 0..b-1, one token each) each row's token is written at that
    row's position (`positions`) and the rows' whole caches are returned; the attention mask hides
    what lies past each row's position.
    """

    def __init__(
        self, config: Any, slots: int, max_context: int, dtype: torch.dtype, device: torch.device
    ) -> None:
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = (
            getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        )
        shape = (slots, heads, max_context, head_dim)
        self.keys = [
            torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)
        ]
        self.values = [torch.zeros_like(k) for k in self.keys]
        self.rows = torch.arange(slots, device=device)
        self.positions = torch.zeros(slots, dtype=torch.long, device=device)
        self.prefill: list[tuple[int, int, int]] | None = None  # (slot, start, length) per prompt

    def update(
        self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *_: Any, **__: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        if self.prefill is not None:
            for slot, start, length in self.prefill:
                keys[slot, :, :length] = key[0, :, start : start + length]
                values[slot, :, :length] = value[0, :, start : start + length]
            return key, value
        b = key.shape[0]
        rows, positions = self.rows[:b], self.positions[:b]
        keys[rows, :, positions] = key[:, :, 0]
        values[rows, :, positions] = value[:, :, 0]
        return keys[:b], values[:b]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0  # positions are passed explicitly


@dataclass
class _Step:
    """A launched decode step: the requests it decodes (by slot) and where its tokens arrive."""

    requests: dict[int, _Request]
    tokens: torch.Tensor
    done: Any  # a CUDA event, None on CPU (the copy was synchronous)


@dataclass
class _Request:
    prompt: list[int]
    max_new_tokens: int
    temperature: float
    streaming: bool
    adapter: int = 0
    tokens: list[int] = field(default_factory=list)
    inbox: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)
    cancelled: bool = False


class SlotBatcher:
    """Decodes up to `max_batch_size` requests together; more wait for a free slot.

    The cache holds `max_batch_size` sequences of `max_context` tokens (prompt plus reply), allocated
    here. With `cuda_graphs` (CUDA only) every bucket's step is captured when the batcher starts.
    """

    def __init__(
        self,
        hf_model: Any,
        eos_token_ids: list[int],
        *,
        max_batch_size: int,
        max_context: int,
        cuda_graphs: bool,
        compile_step: bool = False,
        adapters: AdapterBank | None = None,
    ) -> None:
        from transformers import AttentionInterface

        AttentionInterface.register(ATTENTION, slot_attention)
        hf_model.set_attn_implementation(ATTENTION)
        self._model = hf_model
        self._bank = adapters  # already installed in the model's layers
        # torch.compile fuses the step's small kernels (norms, rotary, activations); the graphs
        # then replay the fused ones.
        self._forward = torch.compile(hf_model) if compile_step else hf_model
        self._eos = set(eos_token_ids)
        self._max_context = max_context
        self._slots = max_batch_size
        device = hf_model.device
        self._cache = SlotCache(
            hf_model.config, max_batch_size, max_context, hf_model.dtype, device
        )
        self._tokens = torch.zeros(max_batch_size, dtype=torch.long, device=device)
        self._temperatures = torch.zeros(max_batch_size, dtype=torch.float32, device=device)
        self._row_adapters = torch.zeros(max_batch_size, dtype=torch.long, device=device)
        self._next = torch.zeros(max_batch_size, dtype=torch.long, device=device)
        self._context = torch.arange(max_context, device=device)
        # Two host buffers: a step's tokens land in one while the previous step's are read from the other.
        pinned = device.type == "cuda"
        self._host = [
            torch.zeros(max_batch_size, dtype=torch.long, pin_memory=pinned) for _ in range(2)
        ]
        self._flip = 0
        self._buckets = _buckets(max_batch_size)
        self._graphs: dict[int, Any] = {}
        self._pending: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._active: dict[int, _Request] = {}
        self._wakeup = threading.Event()
        self._closed = False
        if cuda_graphs and device.type == "cuda":
            self._capture_graphs()
        self._thread = threading.Thread(target=self._run, name="twin-slot-batcher", daemon=True)
        self._thread.start()

    # Public --------------------------------------------------------------------------------------

    def generate(
        self,
        input_ids: list[int],
        max_new_tokens: int,
        temperature: float,
        streaming: bool,
        adapter: int = 0,
    ) -> Iterator[list[int]]:
        """The request's generated ids so far (EOS included), after each step when `streaming`, else
        once at the end. Closing the iterator early cancels the request and frees its slot.
        `adapter`: the index of its LoRA adapter in the batcher's bank (0: the base model)."""
        if adapter and self._bank is None:
            raise BatchingError("this model serves no adapters")
        if len(input_ids) + max_new_tokens > self._max_context:
            raise BatchingError(
                f"{len(input_ids)} prompt + {max_new_tokens} new tokens exceed the KV cache"
                f" of {self._max_context} tokens per request"
            )
        if self._closed:
            raise BatchingError("the batching runtime is stopped and takes no requests")
        request = _Request(list(input_ids), max_new_tokens, float(temperature), streaming, adapter)
        self._pending.put(request)
        self._wakeup.set()
        return self._results(request)

    def close(self) -> None:
        """Stop the decode thread; requests still in flight fail."""
        self._closed = True
        self._wakeup.set()
        self._thread.join(timeout=30)

    # Consumer side -------------------------------------------------------------------------------

    @staticmethod
    def _results(request: _Request) -> Iterator[list[int]]:
        finished = False
        try:
            while not finished:
                item = request.inbox.get()
                while not request.inbox.empty():  # a slow reader skips to the newest
                    item = request.inbox.get()
                if isinstance(item, BaseException):
                    raise BatchingError(f"generation failed: {item}") from item
                tokens, finished = item
                yield tokens
        finally:
            request.cancelled = not finished

    # Decode thread -------------------------------------------------------------------------------

    def _run(self) -> None:
        """Admit, launch a step, then hand out the previous step's tokens while this one computes."""
        in_flight: _Step | None = None
        while not self._closed:
            try:
                self._wakeup.clear()
                self._admit()
                launched = self._launch() if self._active else None
                if in_flight is not None:
                    self._collect(in_flight)
                in_flight = launched
                if in_flight is None and not self._active:
                    self._wakeup.wait(timeout=0.5)
            except Exception as error:  # the requests in flight fail, the thread lives
                in_flight = None
                for request in self._active.values():
                    request.inbox.put(error)
                self._active.clear()
        stopped = BatchingError("the batching runtime stopped")
        for request in self._active.values():
            request.inbox.put(stopped)
        while not self._pending.empty():
            self._pending.get().inbox.put(stopped)

    def _admit(self) -> None:
        """Prefill waiting requests into free slots, packed into one forward pass, up to a prompt-token
        budget per step (a longer prompt goes alone)."""
        free = sorted(set(range(self._slots)) - self._active.keys())
        batch: list[tuple[int, _Request]] = []
        budget = PREFILL_TOKENS_PER_STEP
        while free and budget > 0 and not self._pending.empty():
            request = self._pending.get()
            if not request.cancelled:
                batch.append((free.pop(0), request))
                budget -= len(request.prompt)
        if not batch:
            return
        try:
            firsts = self._prefill(batch)
        except Exception as error:  # these requests fail, the running ones go on
            for _, request in batch:
                request.inbox.put(error)
            return
        for (slot, request), first in zip(batch, firsts, strict=True):
            if not self._deliver(request, first):
                self._active[slot] = request

    @torch.inference_mode()
    def _prefill(self, batch: list[tuple[int, _Request]]) -> list[int]:
        """Run the prompts, packed, into their slots' caches; returns each one's first new token."""
        device = self._tokens.device
        lengths = [len(request.prompt) for _, request in batch]
        ids = torch.tensor([[t for _, request in batch for t in request.prompt]], device=device)
        positions = torch.cat([torch.arange(n) for n in lengths]).to(device)
        bounds = torch.tensor([0, *lengths]).cumsum(0)  # each prompt's start, then the end
        starts = bounds[:-1].tolist()
        self._cache.prefill = [
            (slot, start, n) for (slot, _), start, n in zip(batch, starts, lengths, strict=True)
        ]
        adapters = torch.tensor([request.adapter for _, request in batch], device=device)
        if self._bank is not None:  # each prompt token carries its request's adapter
            self._bank.tokens.adapters = adapters.repeat_interleave(
                torch.tensor(lengths, device=device)
            )
        try:
            logits = self._model(
                input_ids=ids,
                position_ids=positions[None],
                past_key_values=self._cache,
                use_cache=True,
                logits_to_keep=(bounds[1:] - 1).to(device),
                cu_seq_lens_q=bounds,
            ).logits[0]
        finally:
            self._cache.prefill = None
        slots = torch.tensor([slot for slot, _ in batch], device=device)
        temperatures = torch.tensor([r.temperature for _, r in batch], device=device)
        firsts = _sample(logits, temperatures)
        self._tokens[slots] = firsts
        self._cache.positions[slots] = torch.tensor(lengths, device=device)
        self._temperatures[slots] = temperatures
        self._row_adapters[slots] = adapters
        return firsts.tolist()

    @torch.inference_mode()
    def _launch(self) -> _Step:
        """Start one step for every slot of the smallest bucket that holds the active ones; its tokens
        are copied to the host when it ends (the GPU is not waited for)."""
        b = next(size for size in self._buckets if size > max(self._active))
        graph = self._graphs.get(b)
        if graph is not None:
            graph.replay()
        else:
            self._step(b)
        self._flip = 1 - self._flip
        host = self._host[self._flip][:b]
        host.copy_(self._next[:b], non_blocking=True)
        done = None
        if host.is_pinned():
            done = torch.cuda.Event()
            done.record()
        return _Step(dict(self._active), host, done)

    def _collect(self, step: _Step) -> None:
        """Hand each request its token from a finished step; requests that ended meanwhile skip theirs."""
        if step.done is not None:
            step.done.synchronize()
        new = step.tokens.tolist()
        for slot, request in step.requests.items():
            if self._active.get(slot) is not request:
                continue
            if request.cancelled or self._deliver(request, new[slot]):
                del self._active[slot]

    def _deliver(self, request: _Request, token: int) -> bool:
        """Add a token to the request; True when it has finished (EOS, length or context)."""
        request.tokens.append(token)
        finished = (
            token in self._eos
            or len(request.tokens) >= request.max_new_tokens
            or len(request.prompt) + len(request.tokens) >= self._max_context
        )
        if finished or request.streaming:
            request.inbox.put((list(request.tokens), finished))
        return finished

    def _step(self, b: int) -> None:
        """The decode step of rows 0..b-1 on static tensors (what a CUDA graph captures)."""
        positions = self._cache.positions[:b]
        if self._bank is not None:
            self._bank.tokens.adapters = self._row_adapters[:b]
        mask = self._context[None, None, None, :] <= positions[:, None, None, None]
        logits = self._forward(
            input_ids=self._tokens[:b, None],
            position_ids=positions[:, None],
            attention_mask=mask,
            past_key_values=self._cache,
            use_cache=True,
        ).logits[:, -1]
        new = _sample(logits, self._temperatures[:b])
        self._next[:b].copy_(new)
        self._tokens[:b].copy_(new)
        positions.add_(1).clamp_(max=self._max_context - 1)  # rows of idle slots run on harmlessly

    @torch.inference_mode()
    def _capture_graphs(self) -> None:
        """Capture every bucket's step (before any request: warm-up runs write into the slots)."""
        pool = torch.cuda.graph_pool_handle()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for b in self._buckets:
                self._step(b)  # warm-up: kernels chosen and loaded outside the capture
        torch.cuda.current_stream().wait_stream(stream)
        for b in reversed(self._buckets):  # largest first: the smaller ones reuse its memory
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self._step(b)
            self._graphs[b] = graph
        self._cache.positions.zero_()
        torch.cuda.synchronize()


def _buckets(max_batch_size: int) -> list[int]:
    sizes = [1]
    while sizes[-1] < max_batch_size:
        sizes.append(min(sizes[-1] * 2, max_batch_size))
    return sizes


def _sample(logits: torch.Tensor, temperatures: torch.Tensor) -> torch.Tensor:
    """Per row: the argmax at temperature 0, else a draw from the top-k at the row's temperature
    (Gumbel-max: no host synchronisation, so it can be captured in a CUDA graph)."""
    logits = logits.float()
    greedy = logits.argmax(dim=-1)
    top = torch.topk(logits, min(TOP_K, logits.shape[-1]), dim=-1)
    scaled = top.values / temperatures.clamp_min(1e-5)[:, None]
    noise = -torch.log(-torch.log(torch.rand_like(scaled).clamp_min(1e-20)))
    sampled = top.indices.gather(-1, (scaled + noise).argmax(dim=-1, keepdim=True)).squeeze(-1)
    return torch.where(temperatures > 0, sampled, greedy)
