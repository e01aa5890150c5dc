"""Preference pairs from user feedback: a correction beats the answer the API gave.

The API writes `traces` (query, answer) and `feedback` (rating, correction); every correction for the
author's traces becomes (prompt = query, chosen = correction, rejected = answer).
"""

from __future__ import annotations

import psycopg

from twin_platform.datasets.curation import Sample

FEEDBACK_PAIRS_SQL = """
SELECT f.feedback_id, t.trace_id::text, t.query, t.answer, f.correction
FROM feedback f JOIN traces t ON t.trace_id = f.trace_id
WHERE t.author = %s AND f.correction IS NOT NULL AND btrim(f.correction) <> ''
  AND t.answer IS NOT NULL AND btrim(t.answer) <> ''
ORDER BY f.feedback_id
"""


def load_feedback_pairs(conn: psycopg.Connection, author: str) -> list[Sample]:
    """One sample per correction, oldest first; the latest correction of a trace wins in deduplication."""
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
