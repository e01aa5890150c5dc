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
    """Queues traces and writes them in batches on a background thread. `flush()` waits for the queue.

    After each write the thread rests `linger_s`, so that under load a write carries many traces (one
    transaction each) instead of one trace per request, and requests do not wake it one by one.
    """

    def __init__(self, pool: Any, max_batch: int = 200, linger_s: float = 0.2) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._queue: queue.Queue[Trace | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="trace-writer", daemon=True)
        self._thread.start()

    def submit(self, trace: Trace) -> None:
        self._queue.put(trace)

    def flush(self) -> None:
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

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
            except psycopg.Error as exc:
                log.error("could not write %d traces: %s", len(traces), str(exc).splitlines()[0])
            finally:
                for _ in batch:
                    self._queue.task_done()
            if None in batch:
                return
            time.sleep(self._linger_s)


class UnknownTrace(LookupError):
    pass


def add_feedback(
    conn: psycopg.Connection, trace_id: uuid.UUID, rating: int, correction: str | None
) -> int:
    """Store feedback on a trace; a correction makes it a preference pair for the dataset pipeline."""
    try:
        with (
            conn.transaction()
        ):  # a savepoint inside a caller's transaction, which survives a failure
            row = conn.execute(
                "INSERT INTO feedback (trace_id, rating, correction) VALUES (%s, %s, %s) RETURNING feedback_id",
                (trace_id, rating, correction.replace("\x00", "") if correction else None),
            ).fetchone()
    except psycopg.errors.ForeignKeyViolation as exc:
        raise UnknownTrace(str(trace_id)) from exc
    assert row is not None
    return int(row[0])


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
