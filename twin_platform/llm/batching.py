"""Continuous batching of concurrent requests on one transformers model.

A GPU decodes 64 sequences in about the time it decodes one (benchmarks/results/api.md, "Generation"),
so serving requests one at a time behind a lock leaves most of it idle. This wraps transformers'
own continuous batching (`model.init_continuous_batching`, a `ContinuousBatchingManager`): a
background thread schedules every request in flight into shared forward passes over a paged KV
cache; requests join and leave between decode steps, each with its own prompt, length and end.

transformers decides greedy or sampled for a whole manager, so there are two lanes, each a manager
started on first use: greedy requests (temperature 0: the argmax, exactly as `generate`) and sampled
ones (each with its own temperature, top-k as `generate`'s default). Callers get their request's
generated token ids as they grow; `LocalChatModel` turns them into text.
"""

from __future__ import annotations

import itertools
import math
import queue
import threading
from collections.abc import Iterator
from typing import Any

# Tokens of one forward pass (prefill chunks plus one token per decoding request): transformers' default.
MAX_BATCH_TOKENS = 8192
# Tokens per KV cache block: transformers' default.
BLOCK_SIZE = 256
# The sampled lane's default temperature; any value but 1.0 makes transformers build its per-request
# temperature step (each request sends its own).
_SAMPLED_LANE_TEMPERATURE = 0.7


class BatchingError(RuntimeError):
    """The batching runtime refused or failed a request."""


class ContinuousBatcher:
    """Decodes concurrent requests together: `max_batch_size` per lane at once, more wait their turn.

    Each lane's KV cache holds `max_batch_size` sequences of `max_context` tokens, allocated when
    the lane starts. With `cuda_graphs` each forward pass is replayed from a graph captured for its
    padded size (captured on first use of a size), instead of launching every kernel from Python.
    """

    def __init__(
        self,
        hf_model: Any,
        eos_token_ids: list[int],
        *,
        max_batch_size: int,
        max_context: int,
        cuda_graphs: bool,
    ) -> None:
        self._model = hf_model
        self._eos_token_ids = eos_token_ids
        self._max_batch_size = max_batch_size
        self._max_context = max_context
        self._cuda_graphs = cuda_graphs
        self._top_k = int(getattr(hf_model.generation_config, "top_k", None) or 50)
        self._lanes: dict[bool, _Lane] = {}
        self._lanes_lock = threading.Lock()

    def generate(
        self, input_ids: list[int], max_new_tokens: int, temperature: float, streaming: bool
    ) -> Iterator[list[int]]:
        """The request's generated ids so far (all of them, EOS included), after each decode step when
        `streaming`, else once at the end. Closing the iterator early cancels the request and frees its
        slot and cache blocks."""
        if len(input_ids) + max_new_tokens > self._max_batch_size * self._max_context:
            # The scheduler could never place it, and would stop the lane for every request.
            raise BatchingError(
                f"{len(input_ids)} prompt + {max_new_tokens} new tokens exceed the KV cache"
                f" ({self._max_batch_size} x {self._max_context} tokens)"
            )
        sampled = temperature > 0
        processing = {"temperature": float(temperature)} if sampled else {}
        return self._lane(sampled).generate(input_ids, max_new_tokens, streaming, processing)

    def close(self) -> None:
        """Stop the lanes; requests still in flight fail."""
        with self._lanes_lock:
            for lane in self._lanes.values():
                lane.close()
            self._lanes.clear()

    def _lane(self, sampled: bool) -> _Lane:
        """The lane, started on first use, and started again if a fatal error stopped it (its requests
        failed; later ones should not). A stopped lane is dropped, not `stop`ped: stopping restores the
        model's attention implementation under the other lane's feet."""
        with self._lanes_lock:
            lane = self._lanes.get(sampled)
            if lane is None or not lane.running:
                lane = self._lanes[sampled] = _Lane(self._manager(sampled), self._eos_token_ids)
            return lane

    def _manager(self, sampled: bool) -> Any:
        from transformers import ContinuousBatchingConfig, GenerationConfig

        pad = getattr(self._model.generation_config, "pad_token_id", None)
        if sampled:
            generation = GenerationConfig(
                do_sample=True,
                temperature=_SAMPLED_LANE_TEMPERATURE,
                top_k=self._top_k,
                eos_token_id=self._eos_token_ids,
                pad_token_id=pad,
            )
        else:
            generation = GenerationConfig(
                do_sample=False, eos_token_id=self._eos_token_ids, pad_token_id=pad
            )
        config = ContinuousBatchingConfig(
            block_size=BLOCK_SIZE,
            # Sized explicitly: left unset, transformers takes 80-90% of free memory (on CPU, of the RAM).
            num_blocks=self._max_batch_size * math.ceil(self._max_context / BLOCK_SIZE) + 1,
            max_batch_tokens=MAX_BATCH_TOKENS,
            max_requests_per_batch=self._max_batch_size,
            per_request_processors=sampled,
            use_cuda_graph=self._cuda_graphs,
        )
        return self._model.init_continuous_batching(
            generation_config=generation, continuous_batching_config=config
        )


class _Lane:
    """One `ContinuousBatchingManager` and a router thread that hands each of its outputs (one shared
    queue) to the inbox of the request it belongs to."""

    def __init__(self, manager: Any, eos_token_ids: list[int]) -> None:
        self._manager = manager
        self._eos_token_ids = eos_token_ids
        self._ids = itertools.count()
        self._inboxes: dict[str, queue.Queue[Any]] = {}
        self._lock = threading.Lock()
        self._start_error: BaseException | None = None
        started = threading.Event()
        # A daemon thread starts the manager, whose own generation thread inherits daemon status: a
        # non-daemon one would keep the interpreter from exiting.
        self._router = threading.Thread(target=self._route, args=(started,), daemon=True)
        self._router.start()
        started.wait()
        if self._start_error is not None:
            raise BatchingError("the batching runtime failed to start") from self._start_error

    def generate(
        self,
        input_ids: list[int],
        max_new_tokens: int,
        streaming: bool,
        processing: dict[str, Any],
    ) -> Iterator[list[int]]:
        request_id = f"twin-{next(self._ids)}"
        inbox: queue.Queue[Any] = queue.Queue()
        with self._lock:
            self._inboxes[request_id] = inbox
        finished = False
        try:
            accepted = self._manager.add_request(
                input_ids,
                request_id=request_id,
                max_new_tokens=max_new_tokens,
                streaming=streaming,
                eos_token_id=self._eos_token_ids,
                **processing,
            )
            if accepted is None:
                raise BatchingError("the batching runtime is stopped and takes no requests")
            while not finished:
                output = _latest(inbox)
                if isinstance(output, BaseException):
                    raise output
                if output.error is not None:
                    raise BatchingError(f"generation failed: {output.error}")
                finished = output.is_finished()
                yield output.generated_tokens
        finally:
            with self._lock:
                self._inboxes.pop(request_id, None)
            if not finished:
                self._manager.cancel_request(request_id)

    @property
    def running(self) -> bool:
        return bool(self._manager.is_running())

    def close(self) -> None:
        self._manager.stop(block=True, timeout=10, hard_stop=True)
        self._router.join(timeout=10)

    def _route(self, started: threading.Event) -> None:
        """Deliver each output to its request's inbox until the manager stops; then fail the waiting."""
        try:
            self._manager.warmup()  # captures CUDA graphs when they are on; otherwise a no-op
            self._manager.start()
        except Exception as error:
            self._start_error = error
            return
        finally:
            started.set()
        while self._manager.is_running():
            output = self._manager.get_result(timeout=0.5)
            if output is None:
                continue
            with self._lock:
                inbox = self._inboxes.get(output.request_id)
            if inbox is not None:  # None: cancelled, its late outputs are dropped
                inbox.put(output)
        with self._lock:
            for inbox in self._inboxes.values():
                inbox.put(BatchingError("the batching runtime stopped"))


def _latest(inbox: queue.Queue[Any]) -> Any:
    """The newest output waiting (outputs carry all tokens so far: a slow reader may skip the older)."""
    output = inbox.get()
    while True:
        try:
            output = inbox.get_nowait()
        except queue.Empty:
            return output
