"""Adds a dynamic partition for every author in the sources file and collects new or changed ones."""

from __future__ import annotations

import hashlib
import json

import dagster as dg

from assets.partitions import add_authors
from jobs.collection import collect_job
from twin_platform.collection.sources import load_sources
from twin_platform.settings import load_settings


@dg.sensor(
    job=collect_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING
)
def author_sources(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    """Cursor: a fingerprint of each author's sources, so only new or edited authors are collected."""
    path = load_settings().authors_file
    try:
        configured = load_sources(path).authors
    except ValueError as exc:
        return dg.SkipReason(f"cannot read {path}: {exc}")
    previous: dict[str, str] | None = json.loads(context.cursor) if context.cursor else None
    fingerprints = {
        a.name: hashlib.sha256(
            json.dumps([s.model_dump(mode="json") for s in a.sources]).encode()
        ).hexdigest()[:16]
        for a in configured
    }
    new_partitions = add_authors(context.instance, fingerprints)
    if previous is None:  # first tick: collect only authors without a partition yet
        to_collect = new_partitions
    else:
        to_collect = sorted(name for name, fp in fingerprints.items() if previous.get(name) != fp)
    runs = [
        dg.RunRequest(partition_key=name, run_key=f"{name}:{fingerprints[name]}")
        for name in to_collect
    ]
    return dg.SensorResult(run_requests=runs, cursor=json.dumps(fingerprints, sort_keys=True))
