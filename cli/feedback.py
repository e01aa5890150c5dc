"""`twin feedback list|approve|reject`: the review step between user corrections and training.

Decisions go through the `reviewed_feedback` asset (one run per author, its reviewer in the run
config), so the UI shows every decision and the new counts, and the author's preference dataset
follows the approved set.
"""

from __future__ import annotations

from typing import Annotated, Literal

import typer
from rich.table import Table

from cli.common import console, op_config, open_instance, run_selection
from twin_platform import servers
from twin_platform.servers.common import ServiceError
from twin_platform.settings import Settings, load_settings
from twin_platform.storage.postgres import connect

app = typer.Typer(help="Review user corrections before they reach a dataset.", no_args_is_help=True)
ASSET = "reviewed_feedback"


@app.command("list")
def list_feedback(
    author: Annotated[str | None, typer.Option(help="Only this author's feedback.")] = None,
    status: Annotated[
        str, typer.Option(help="pending (default), approved, rejected, or all.")
    ] = "pending",
    limit: Annotated[int, typer.Option(min=1, help="Rows to show, oldest first.")] = 50,
) -> None:
    """Corrections with the query, the answer the twin gave and the correction offered."""
    from twin_platform.datasets.feedback import REVIEWABLE, list_feedback

    if status not in (*REVIEWABLE, "all"):
        raise ServiceError(f"--status must be one of {', '.join((*REVIEWABLE, 'all'))}")
    settings = load_settings()
    with connect(servers.postgres_uri(settings)) as conn:
        items = list_feedback(conn, author, None if status == "all" else status, limit)
    table = Table("id", "author", "status", "query", "answer", "correction", "key", "reviewed by")
    for item in items:
        table.add_row(
            str(item.feedback_id),
            item.author or "-",
            item.status,
            item.query,
            item.answer,
            item.correction,
            item.api_key_id or "-",
            item.reviewed_by or "-",
        )
    console.print(table)
    console.print(
        f"{len(items)} shown; approve or reject with `twin feedback approve|reject ID...`"
    )


def _decide(ids: list[int], decision: Literal["approve", "reject"], reviewer: str) -> None:
    from assets.feedback import current_user

    settings = load_settings()
    authors = _authors_to_run(settings, ids)
    config = op_config([ASSET], **{decision: ids, "reviewer": reviewer or current_user()})
    if not run_selection(settings, ASSET, sorted(authors), config):
        raise typer.Exit(1)
    _print_outcome(settings, ids)


def _authors_to_run(settings: Settings, ids: list[int]) -> set[str]:
    """The registered authors the ids belong to; any unknown id, or one no dataset could use,
    stops the command before anything changes."""
    from assets.partitions import authors as author_partitions
    from twin_platform.datasets.feedback import authors_of

    with connect(servers.postgres_uri(settings)) as conn:
        found = authors_of(conn, ids)
    unknown = sorted(set(ids) - set(found))
    if unknown:
        raise ServiceError(f"no feedback with id {', '.join(map(str, unknown))}")
    no_author = sorted(i for i, author in found.items() if author is None)
    if no_author:
        raise ServiceError(f"feedback {no_author} answered no author's twin: nothing to review")
    authors = {author for author in found.values() if author is not None}
    instance = open_instance(settings)
    unregistered = sorted(
        a for a in authors if not instance.has_dynamic_partition(author_partitions.name, a)
    )
    if unregistered:
        raise ServiceError(
            f"{', '.join(unregistered)}: not a registered author (twin ingest); their feedback"
            " cannot enter a dataset"
        )
    return authors


def _print_outcome(settings: Settings, ids: list[int]) -> None:
    with connect(servers.postgres_uri(settings)) as conn:
        rows = conn.execute(
            "SELECT feedback_id, author, status FROM feedback WHERE feedback_id = ANY(%s)"
            " ORDER BY feedback_id",
            (ids,),
        ).fetchall()
    for feedback_id, author, status in rows:
        console.print(f"{feedback_id}  {author}  {status}", highlight=False)


IdsArgument = Annotated[list[int], typer.Argument(help="Feedback ids (see `twin feedback list`).")]
ReviewerOption = Annotated[
    str, typer.Option(help="Who decides, recorded on each row (default: the current user).")
]


@app.command("approve")
def approve(ids: IdsArgument, reviewer: ReviewerOption = "") -> None:
    """Let these corrections into their author's preference dataset (as chosen, against the
    answer the twin gave as rejected)."""
    _decide(ids, "approve", reviewer)


@app.command("reject")
def reject(ids: IdsArgument, reviewer: ReviewerOption = "") -> None:
    """Keep these corrections out of every dataset."""
    _decide(ids, "reject", reviewer)
