"""Collects an author again when an export lands in (or changes in) their inbox folder."""

from __future__ import annotations

import json

import dagster as dg

from assets.partitions import add_authors
from jobs.collection import collect_job
from twin_platform.collection.inbox import fingerprint, inbox_authors, inbox_entries
from twin_platform.settings import load_settings


@dg.sensor(
    job=collect_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING
)
def author_inbox(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    """Cursor: a fingerprint of each author's settled inbox entries; a folder named like an author
    who is not registered yet becomes a new author."""
    inbox = load_settings().inbox_dir
    previous: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    current = {
        author: fingerprint(entries)
        for author in inbox_authors(inbox)
        if (entries := inbox_entries(inbox, author))
    }
    changed = sorted(a for a, fp in current.items() if previous.get(a) != fp)
    if not changed and current == previous:
        return dg.SkipReason(f"no new export in {inbox}/<author>/")
    add_authors(context.instance, changed)
    runs = [dg.RunRequest(partition_key=a, run_key=f"inbox:{a}:{current[a]}") for a in changed]
    return dg.SensorResult(run_requests=runs, cursor=json.dumps(current, sort_keys=True))
