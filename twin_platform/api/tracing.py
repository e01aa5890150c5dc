"""Every request leaves a trace, also when it fails: the error is recorded, then re-raised."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from twin_platform.api.deps import Serving
from twin_platform.monitoring import Trace
from twin_platform.rag.pipeline import Answering
from twin_platform.settings import Settings


@contextmanager
def traced(
    serving: Serving, trace: Trace, submit: bool = True, started: float | None = None
) -> Iterator[Trace]:
    """Times the request as `total` (from `started`, default now); `submit=False` leaves submitting
    to a stream that outlives the block (an error submits at once)."""
    started = time.perf_counter() if started is None else started
    try:
        yield trace
    except Exception as exc:
        record_error(trace, exc)
        submit = True
        raise
    finally:
        trace.latencies_ms["total"] = round((time.perf_counter() - started) * 1000, 2)
        if submit:
            serving.writer.submit(trace)


def finish_stream(serving: Serving, trace: Trace, started: float) -> None:
    trace.latencies_ms["total"] = round((time.perf_counter() - started) * 1000, 2)
    serving.writer.submit(trace)


def record_error(trace: Trace, exc: Exception) -> None:
    """The error's type and message, cut short; never its traceback."""
    trace.error = f"{type(exc).__name__}: {str(exc)[:500]}"


def record_persona(trace: Trace, answering: Answering, settings: Settings) -> None:
    """The author whose voice answers (the one named or found, else the default author), as the
    server decided it: feedback on the answer is filed under this author, whatever a client
    says later."""
    trace.author = answering.retrieval.filters.author or settings.rag_default_author
