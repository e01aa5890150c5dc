"""Reviewed feedback: user corrections become preference pairs only after a person approved them.

The API writes `traces` (query, answer, the author whose voice answered) and `feedback` (rating,
correction, the key that sent it). A correction of an answer rated bad waits as `pending`; a
reviewer approves or rejects it (`twin feedback approve|reject`, or the `reviewed_feedback` asset's
launchpad config). Only approved ones reach a dataset, as (prompt = the query, chosen = the
correction, rejected = the answer the server recorded), for the author on the trace: a caller can
neither pick whose twin learns from them nor get a pair in without review.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import psycopg

from twin_platform.datasets.curation import Sample

Decision = Literal["approved", "rejected"]
STATUSES = ("pending", "approved", "rejected", "ignored")
REVIEWABLE = ("pending", "approved", "rejected")  # 'ignored' rows can never become pairs


@dataclass(frozen=True)
class FeedbackItem:
    """A correction as a reviewer sees it: what was asked, what the twin said, what the user wants."""

    feedback_id: int
    trace_id: str
    author: str | None
    status: str
    rating: int
    query: str
    answer: str
    correction: str
    api_key_id: str | None
    created_at: datetime
    reviewed_by: str | None
    reviewed_at: datetime | None


_ITEM_COLUMNS = """f.feedback_id, t.trace_id::text, f.author, f.status, f.rating, t.query,
    coalesce(t.answer, ''), coalesce(f.correction, ''), f.api_key_id, f.created_at, f.reviewed_by,
    f.reviewed_at"""


def list_feedback(
    conn: psycopg.Connection,
    author: str | None = None,
    status: str | None = "pending",
    limit: int = 50,
) -> list[FeedbackItem]:
    """Reviewable corrections, oldest first (the review queue is worked in arrival order)."""
    rows = conn.execute(
        f"SELECT {_ITEM_COLUMNS} FROM feedback f JOIN traces t ON t.trace_id = f.trace_id"
        " WHERE f.status = ANY(%s) AND (%s::text IS NULL OR f.author = %s)"
        " ORDER BY f.feedback_id LIMIT %s",
        ([status] if status else list(REVIEWABLE), author, author, limit),
    ).fetchall()
    return [FeedbackItem(*row) for row in rows]


def authors_of(conn: psycopg.Connection, feedback_ids: list[int]) -> dict[int, str | None]:
    """feedback_id -> author for the ids that exist, so a caller can tell which are unknown."""
    rows = conn.execute(
        "SELECT feedback_id, author FROM feedback WHERE feedback_id = ANY(%s)", (feedback_ids,)
    ).fetchall()
    return {int(feedback_id): author for feedback_id, author in rows}


def review(
    conn: psycopg.Connection,
    author: str,
    feedback_ids: list[int],
    decision: Decision,
    reviewer: str,
) -> list[int]:
    """Set the decision on those of `feedback_ids` that are the author's and reviewable (a decision
    may be changed later); returns the ids changed. Others are left alone, never an error, so one
    decision list can be applied per author."""
    if decision not in ("approved", "rejected"):
        raise ValueError(f"decision must be approved or rejected, not {decision!r}")
    if not feedback_ids:
        return []
    rows = conn.execute(
        "UPDATE feedback SET status = %s, reviewed_by = %s, reviewed_at = now()"
        " WHERE feedback_id = ANY(%s) AND author = %s AND status = ANY(%s) AND status <> %s"
        " RETURNING feedback_id",
        (decision, reviewer, feedback_ids, author, list(REVIEWABLE), decision),
    ).fetchall()
    return sorted(int(row[0]) for row in rows)


def status_counts(conn: psycopg.Connection, author: str) -> dict[str, int]:
    """Rows of the author's feedback per status, every status present (zeros included)."""
    counts: Counter[str] = Counter({status: 0 for status in STATUSES})
    for status, n in conn.execute(
        "SELECT status, count(*) FROM feedback WHERE author = %s GROUP BY status", (author,)
    ):
        counts[status] = int(n)
    return dict(counts)


def approved_digest(conn: psycopg.Connection, author: str) -> str:
    """A short hash of the approved ids and their texts: it changes exactly when the pairs a
    dataset build would read change (the asset's data version)."""
    digest = hashlib.sha256()
    for feedback_id, correction in conn.execute(
        "SELECT feedback_id, correction FROM feedback WHERE author = %s AND status = 'approved'"
        " ORDER BY feedback_id",
        (author,),
    ):
        digest.update(f"{feedback_id}\0{correction}\0".encode())
    return digest.hexdigest()[:16]


FEEDBACK_PAIRS_SQL = """
SELECT f.feedback_id, t.trace_id::text, t.query, t.answer, f.correction
FROM feedback f JOIN traces t ON t.trace_id = f.trace_id
WHERE f.author = %s AND f.status = 'approved' AND f.rating < 0
  AND f.correction IS NOT NULL AND btrim(f.correction) <> ''
  AND t.answer IS NOT NULL AND btrim(t.answer) <> ''
ORDER BY f.feedback_id
"""


def load_feedback_pairs(conn: psycopg.Connection, author: str) -> list[Sample]:
    """One sample per approved correction of a bad answer, oldest first; the latest approved
    correction of a trace wins."""
    rows = conn.execute(FEEDBACK_PAIRS_SQL, (author,)).fetchall()
    latest = {
        trace_id: (feedback_id, query, answer, correction)
        for feedback_id, trace_id, query, answer, correction in rows
    }
    return [
        Sample(
            sample_id=f"feedback:{feedback_id}",
            instruction=query.strip(),
            answer=correction.strip(),
            rejected=answer.strip(),
            source_url=f"trace:{trace_id}",
            category="feedback",
            origin="feedback",
        )
        for trace_id, (feedback_id, query, answer, correction) in latest.items()
    ]
