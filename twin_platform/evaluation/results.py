"""Evaluation results in Postgres (`eval_results`): one row per number, kept for comparisons."""

from __future__ import annotations

import psycopg

from twin_platform.evaluation.report import EvalReport


def write_results(conn: psycopg.Connection, report: EvalReport, run_id: str | None) -> int:
    """Every number of the report, in one transaction; returns the rows written."""
    rows = [
        (
            report.author,
            report.candidate,
            role,
            report.models[role].model if role in report.models else None,
            metric,
            value,
            run_id,
        )
        for role, metric, value in report.metric_rows()
    ]
    with conn.transaction(), conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO eval_results (author, candidate, model_role, model, metric, value, run_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            rows,
        )
    return len(rows)


def retrieval_at_promotion(conn: psycopg.Connection, author: str, production: str) -> float | None:
    """The retrieval hit rate measured by the last evaluation of the model now in production."""
    row = conn.execute(
        "SELECT value FROM eval_results WHERE author = %s AND candidate = %s"
        " AND model_role = 'retrieval' AND metric LIKE 'hit_rate_at_%%'"
        " ORDER BY evaluated_at DESC LIMIT 1",
        (author, production),
    ).fetchone()
    return float(row[0]) if row else None
