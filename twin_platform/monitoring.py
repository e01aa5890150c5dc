"""Prompt monitoring: every inference request becomes a row of `traces`; feedback rows point at one.

The API hands traces to a `TraceWriter`, which inserts them in batches from a background thread, so
tracing adds no database round trip to a request. `summarize` reads recent traffic back for the
monitoring asset: request counts, error rate, latency percentiles per stage, feedback.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from twin_platform.reporting import figure, image_markdown, markdown_table

log = logging.getLogger(__name__)


@dataclass
class Trace:
    """One request, as `traces` stores it. Latencies are milliseconds per stage plus `total`."""

    route: str
    query: str
    trace_id: uuid.UUID = field(default_factory=uuid.uuid4)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    api_key_id: str | None = None
    author: str | None = None
    expansions: list[str] = field(default_factory=list)
    retrieved: list[dict[str, Any]] = field(default_factory=list)
    prompt: str | None = None
    answer: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latencies_ms: dict[str, float] = field(default_factory=dict)
    model_version: str | None = None
    error: str | None = None


_COLUMNS = [
    "trace_id", "created_at", "api_key_id", "route", "query", "author", "expansions", "retrieved",
    "prompt", "answer", "prompt_tokens", "completion_tokens", "latencies_ms", "model_version", "error",
]  # fmt: skip
_JSON = {"expansions", "retrieved", "latencies_ms"}
_INSERT = (
    f"INSERT INTO traces ({', '.join(_COLUMNS)}) VALUES ({', '.join(['%s'] * len(_COLUMNS))})"
    " ON CONFLICT (trace_id) DO NOTHING"
)


def _value(trace: Trace, column: str) -> Any:
    value = getattr(trace, column)
    # Postgres text cannot hold NUL bytes; a client may send them.
    if column in _JSON:
        return json.dumps(value).replace("\\u0000", "")
    return value.replace("\x00", "") if isinstance(value, str) else value


def _row(trace: Trace) -> tuple[Any, ...]:
    return tuple(_value(trace, column) for column in _COLUMNS)


def write_traces(conn: psycopg.Connection, traces: list[Trace]) -> None:
    """Idempotent on trace_id: re-sending a batch after a failure writes nothing twice."""
    with conn.cursor() as cur:
        cur.executemany(_INSERT, [_row(t) for t in traces])


class TraceWriter:
    """Queues traces and writes them in batches on a background thread.

    After each write the thread rests `linger_s`, so that under load a write carries many traces (one
    transaction each) instead of one trace per request, and requests do not wake it one by one.

    Waits are for one trace (`wait_written`) and always bounded: `/feedback` must not wait for
    everyone else's traffic to drain, which under steady load never happens. A writer thread that
    dies (a bug, a killed thread) is started again by the next call, and what was still queued is
    written by the new one: a dead writer must not turn every later request into a hang.
    """

    def __init__(self, pool: Any, max_batch: int = 200, linger_s: float = 0.2) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._queue: queue.Queue[Trace | None] = queue.Queue()
        self._pending: set[uuid.UUID] = set()  # submitted, not yet written (or given up on)
        self._changed = threading.Condition()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.restarts = 0  # writer threads started again after one died
        self._ensure_running()

    def submit(self, trace: Trace) -> None:
        with self._changed:
            self._pending.add(trace.trace_id)
        self._queue.put(trace)
        self._ensure_running()

    def is_pending(self, trace_id: uuid.UUID) -> bool:
        with self._changed:
            return trace_id in self._pending

    def wait_written(self, trace_id: uuid.UUID, timeout_s: float) -> bool:
        """True once this trace is no longer queued (written, or dropped after a logged write
        error); False if it still is after `timeout_s`. Unknown ids return at once."""
        return self._wait(lambda: trace_id not in self._pending, timeout_s)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait, at most `timeout_s`, until nothing is queued; True if that happened."""
        return self._wait(lambda: not self._pending, timeout_s)

    def close(self) -> None:
        self.flush(timeout_s=10.0)
        self._closed = True
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _wait(self, done: Any, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not done():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.5))
                if not done():  # a dead writer would never finish: start another
                    self._changed.release()
                    try:
                        self._ensure_running()
                    finally:
                        self._changed.acquire()
        return True

    def _ensure_running(self) -> None:
        if self._closed or self.alive:
            return
        with self._start_lock:
            if self._closed or self.alive:
                return
            if self._thread is not None:
                self.restarts += 1
                log.error("the trace writer thread died; starting another (%d)", self.restarts)
            self._thread = threading.Thread(target=self._loop, name="trace-writer", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            traces = [t for t in batch if t is not None]
            try:
                if traces:
                    with self._pool.connection() as conn:
                        write_traces(conn, traces)
            except Exception as exc:  # the batch is lost, the writer is not
                message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.error("could not write %d traces: %s", len(traces), message)
            finally:  # also when the thread itself is being killed: waiters must not hang
                with self._changed:
                    self._pending.difference_update(t.trace_id for t in traces)
                    self._changed.notify_all()
            if None in batch:
                return
            time.sleep(self._linger_s)


class UnknownTrace(LookupError):
    """No trace with that id was answered for this key."""


class TooManyPending(RuntimeError):
    """The key has as many corrections awaiting review as it may."""


# A correction is worth reviewing only for an answer rated bad, given in an author's voice, with an
# answer recorded; everything else is kept as a rating and never enters a dataset.
_ADD_FEEDBACK = """
INSERT INTO feedback (trace_id, rating, correction, author, api_key_id, status)
SELECT t.trace_id, %(rating)s, %(correction)s, t.author, %(key)s,
       CASE WHEN %(rating)s < 0 AND btrim(coalesce(%(correction)s, '')) <> ''
                 AND t.author IS NOT NULL AND btrim(coalesce(t.answer, '')) <> '' AND t.error IS NULL
            THEN 'pending' ELSE 'ignored' END
FROM traces t
WHERE t.trace_id = %(trace_id)s AND t.api_key_id IS NOT DISTINCT FROM %(key)s
RETURNING feedback_id, status
"""


def add_feedback(
    conn: psycopg.Connection,
    trace_id: uuid.UUID,
    rating: int,
    correction: str | None,
    api_key_id: str | None = None,
    max_pending: int | None = None,
) -> tuple[int, str]:
    """Store a rating (and correction) on a trace that this key was answered: (feedback_id, status).

    The author is the one the server recorded on the trace, never the client's word. A correction
    of a bad answer waits for review ('pending') before any dataset reads it; anything else is
    'ignored' by datasets. `max_pending` caps the corrections a key may have awaiting review.
    """
    values = {
        "trace_id": trace_id,
        "rating": rating,
        "correction": correction.replace("\x00", "") if correction else None,
        "key": api_key_id,
    }
    with conn.transaction():  # a savepoint inside a caller's transaction
        row = conn.execute(_ADD_FEEDBACK, values).fetchone()
        if row is None:
            raise UnknownTrace(str(trace_id))
        if row[1] == "pending" and max_pending is not None:
            (pending,) = conn.execute(
                "SELECT count(*) FROM feedback WHERE api_key_id IS NOT DISTINCT FROM %s"
                " AND status = 'pending'",
                (api_key_id,),
            ).fetchone()  # type: ignore[misc]
            if pending > max_pending:
                raise TooManyPending(f"{max_pending} corrections of this key await review")
    return int(row[0]), str(row[1])


@dataclass(frozen=True)
class TrafficSummary:
    since: datetime
    requests: int
    errors: int
    by_route: dict[str, int]
    latency_percentiles_ms: dict[str, dict[str, float]]  # stage -> {p50, p95, p99}
    feedback: dict[str, int]  # positive, negative, corrections
    per_hour: list[tuple[datetime, int, int]]  # (hour, requests, errors)
    totals_ms: list[float]  # every request's total latency, for a histogram

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def summarize(conn: psycopg.Connection, hours: float = 24.0) -> TrafficSummary:
    """Recent traffic, computed in SQL (percentile_cont) so it scales with the table."""
    since = datetime.now(UTC) - timedelta(hours=hours)
    requests, errors = conn.execute(
        "SELECT count(*), count(error) FROM traces WHERE created_at >= %s", (since,)
    ).fetchone()  # type: ignore[misc]
    by_route = dict(
        conn.execute(
            "SELECT route, count(*) FROM traces WHERE created_at >= %s GROUP BY route ORDER BY 2 DESC",
            (since,),
        ).fetchall()
    )
    percentiles: dict[str, dict[str, float]] = {}
    for stage, p50, p95, p99 in conn.execute(
        """SELECT key, percentile_cont(0.5) WITHIN GROUP (ORDER BY value::float8),
                  percentile_cont(0.95) WITHIN GROUP (ORDER BY value::float8),
                  percentile_cont(0.99) WITHIN GROUP (ORDER BY value::float8)
           FROM traces, jsonb_each_text(latencies_ms) WHERE created_at >= %s GROUP BY key ORDER BY key""",
        (since,),
    ):
        percentiles[stage] = {"p50": round(p50, 1), "p95": round(p95, 1), "p99": round(p99, 1)}
    positive, negative, corrections = conn.execute(
        "SELECT count(*) FILTER (WHERE rating > 0), count(*) FILTER (WHERE rating < 0),"
        " count(correction) FROM feedback WHERE created_at >= %s",
        (since,),
    ).fetchone()  # type: ignore[misc]
    per_hour = conn.execute(
        "SELECT date_trunc('hour', created_at) AS h, count(*), count(error) FROM traces"
        " WHERE created_at >= %s GROUP BY h ORDER BY h",
        (since,),
    ).fetchall()
    totals = [
        float(r[0])
        for r in conn.execute(
            "SELECT (latencies_ms->>'total')::float8 FROM traces"
            " WHERE created_at >= %s AND latencies_ms ? 'total' ORDER BY created_at DESC LIMIT 100000",
            (since,),
        )
    ]
    return TrafficSummary(
        since=since,
        requests=int(requests),
        errors=int(errors),
        by_route=by_route,
        latency_percentiles_ms=percentiles,
        feedback={"positive": positive, "negative": negative, "corrections": corrections},
        per_hour=[(h, int(n), int(e)) for h, n, e in per_hour],
        totals_ms=totals,
    )


def summary_markdown(summary: TrafficSummary) -> str:
    """Latency percentiles per stage as a Markdown table."""
    rows = [{"stage": stage, **p} for stage, p in summary.latency_percentiles_ms.items()]
    return markdown_table(rows, ["stage", "p50", "p95", "p99"])


def traffic_plot(summary: TrafficSummary) -> str:
    """Requests and errors per hour, and the histogram of request latency, as a Markdown image."""
    with figure("API traffic", size=(10, 3.2), ncols=2) as (fig, (left, right)):
        hours = [h for h, _, _ in summary.per_hour]
        left.bar(hours, [n for _, n, _ in summary.per_hour], width=0.03, label="requests")
        left.bar(
            hours, [e for _, _, e in summary.per_hour], width=0.03, color="tab:red", label="errors"
        )
        left.set_title("requests per hour")
        left.legend()
        left.tick_params(axis="x", labelrotation=30, labelsize=7)
        right.hist(summary.totals_ms or [0], bins=40, color="tab:green")
        right.set_title("request latency (ms)")
        right.set_yscale("log")
        return image_markdown(fig, "traffic")
