"""The review step between user feedback and training: `reviewed_feedback`, per author.

The API stores every correction as `pending`; only those a person approves reach the author's
preference dataset (which depends on this asset). Decisions come from the launchpad config
(`approve`, `reject`: feedback ids) or from `twin feedback approve|reject`, which materializes this
asset with that config, so every decision is a run with its reviewer in the UI. Each
materialization shows the author's counts per status, the queue awaiting review and the approved
set's digest (its data version: downstream sees a change only when the approved pairs change).
"""

import getpass
from typing import Any

import dagster as dg
from pydantic import Field

from assets.partitions import authors
from resources import PostgresResource
from twin_platform.datasets import feedback
from twin_platform.reporting import markdown_table

PREVIEW_ROWS = 20
PREVIEW_CHARS = 160


def current_user() -> str:
    """The login name, or "unknown" where there is none (a container without a passwd entry)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class ReviewConfig(dg.Config):
    """Decisions to apply before the counts are taken; ids of other authors are left alone."""

    approve: list[int] = Field(
        default_factory=list, description="Feedback ids whose corrections may enter the dataset."
    )
    reject: list[int] = Field(
        default_factory=list, description="Feedback ids whose corrections must never enter it."
    )
    reviewer: str = Field(
        default_factory=current_user, description="Who decided (recorded on each row)."
    )


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def queue_markdown(items: list[feedback.FeedbackItem]) -> str:
    """The corrections awaiting review, as a table a reviewer can decide from."""
    rows = [
        {
            "id": item.feedback_id,
            "query": _short(item.query),
            "answer": _short(item.answer),
            "correction": _short(item.correction),
            "key": item.api_key_id or "-",
        }
        for item in items
    ]
    return markdown_table(rows, ["id", "query", "answer", "correction", "key"])


@dg.asset(
    group_name="datasets",
    partitions_def=authors,
    kinds={"postgres"},
)
def reviewed_feedback(
    context: dg.AssetExecutionContext, config: ReviewConfig, postgres: PostgresResource
) -> dg.MaterializeResult:
    """User corrections a reviewer approved: the only feedback preference datasets read."""
    author = context.partition_key
    overlap = set(config.approve) & set(config.reject)
    if overlap:
        raise dg.Failure(f"feedback ids both approved and rejected: {sorted(overlap)}")
    with postgres.connection() as conn:
        with conn.transaction():
            approved = feedback.review(conn, author, config.approve, "approved", config.reviewer)
            rejected = feedback.review(conn, author, config.reject, "rejected", config.reviewer)
        counts = feedback.status_counts(conn, author)
        waiting = feedback.list_feedback(conn, author, "pending", limit=PREVIEW_ROWS)
        digest = feedback.approved_digest(conn, author)
    if approved or rejected:
        context.log.info(
            "%s: approved %s, rejected %s by %s", author, approved, rejected, config.reviewer
        )
    metadata: dict[str, Any] = {
        "pending": counts["pending"],
        "approved": counts["approved"],
        "rejected": counts["rejected"],
        "ignored": counts["ignored"],
        "dagster/row_count": counts["approved"],
        "approved_now": dg.MetadataValue.json(approved),
        "rejected_now": dg.MetadataValue.json(rejected),
        "reviewer": config.reviewer,
        "approved_digest": digest,
        "awaiting_review": dg.MetadataValue.md(queue_markdown(waiting)),
    }
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(digest))
