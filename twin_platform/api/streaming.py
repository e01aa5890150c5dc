"""Streamed answers that cannot hold their model without bound.

A streamed answer keeps its model (on llama.cpp, the model's one lock) from its first token until the
stream ends. Starlette would drive a plain iterator from its thread pool and never close it when the
client leaves, and a client that stops reading would keep it open as long as it likes. Here:

- `BoundedStreamingResponse` drives the route's iterator from threads and closes it (also in a
  thread) however the response ends: finished, failed, the client gone, or the time limit hit;
  closing it runs the route's `finally`, which ends the generation and releases the model. Each
  stream has its own thread token, outside the shared pool: requests waiting for the model can
  fill that pool, and a stream that holds the model must still be able to step and to close.
- The whole response, slow readers included, is bounded by `serve_generation_timeout_s` plus a
  short grace for the last event; the route's iterator checks the same deadline between deltas
  (`check_deadline`), so a generation that runs long ends with an error event the client can read.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
from starlette.responses import StreamingResponse

GRACE_S = 5.0  # after the deadline: time for the route's own timeout event to reach the client
_DONE = object()


class GenerationTimeout(TimeoutError):
    """A streamed answer ran past `serve_generation_timeout_s`."""


def check_deadline(deadline: float, limit_s: float) -> None:
    if time.monotonic() > deadline:
        raise GenerationTimeout(f"the answer was stopped after {limit_s:g} s")


def _next(chunks: Iterator[str]) -> Any:
    return next(chunks, _DONE)


async def _closing(chunks: Iterator[str]) -> AsyncIterator[str]:
    """`chunks` driven from worker threads, and closed in one whatever stops the iteration."""
    limiter = anyio.CapacityLimiter(1)  # this stream's own: never queued behind other requests
    try:
        while True:
            chunk = await anyio.to_thread.run_sync(_next, chunks, limiter=limiter)
            if chunk is _DONE:
                return
            yield chunk
    finally:
        with anyio.CancelScope(shield=True):
            close = getattr(chunks, "close", None)
            if close is not None:
                await anyio.to_thread.run_sync(close, limiter=limiter)


class BoundedStreamingResponse(StreamingResponse):
    """A streaming response that ends within `limit_s` (+ grace) and always closes its iterator."""

    def __init__(self, chunks: Iterator[str], limit_s: float, media_type: str) -> None:
        super().__init__(_closing(chunks), media_type=media_type)
        self.limit_s = limit_s

    async def stream_response(self, send: Any) -> None:
        try:
            with anyio.move_on_after(self.limit_s + GRACE_S) as scope:
                await super().stream_response(send)
            if scope.cancelled_caught:  # a reader too slow to take even the timeout event
                with anyio.move_on_after(1):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
