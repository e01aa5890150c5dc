"""Materialize an asset selection in this process, against the instance the UI reads.

A selection may mix unpartitioned assets with assets partitioned by author; one Dagster run holds one
partition, so the selection is cut into topologically ordered segments and each partition of a
partitioned segment gets its own run.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dagster as dg


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    assets: list[str]
    partition: str | None
    success: bool


def plan_segments(defs: dg.Definitions, selection: str) -> list[tuple[bool, list[dg.AssetKey]]]:
    """Selected asset keys in topological order, grouped into (partitioned?, keys) segments."""
    graph = defs.resolve_asset_graph()
    try:
        selected = dg.AssetSelection.from_string(selection).resolve(graph)
    except dg.DagsterError as exc:  # unknown keys, syntax errors
        raise ValueError(f"selection {selection!r} matches no asset: {exc}") from exc
    if not selected:
        raise ValueError(f"selection {selection!r} matches no asset")
    segments: list[tuple[bool, list[dg.AssetKey]]] = []
    for key in graph.toposorted_asset_keys:
        if key not in selected or not graph.get(key).is_materializable:
            continue
        partitioned = graph.get(key).partitions_def is not None
        if segments and segments[-1][0] == partitioned:
            segments[-1][1].append(key)
        else:
            segments.append((partitioned, [key]))
    return segments


def materialize(
    selection: str,
    partitions: Sequence[str] | None = None,
    instance: dg.DagsterInstance | None = None,
    on_run: Callable[[RunOutcome], None] = lambda outcome: None,
) -> list[RunOutcome]:
    """Run the selection; `partitions` limits partitioned assets (default: every known partition)."""
    from definitions import defs

    instance = instance or dg.DagsterInstance.get()
    graph = defs.resolve_asset_graph()
    job = defs.resolve_implicit_global_asset_job_def()
    outcomes: list[RunOutcome] = []
    for partitioned, keys in plan_segments(defs, selection):
        if partitioned:
            partitions_def = graph.get(keys[0]).partitions_def
            assert partitions_def is not None
            keys_to_run: Sequence[str | None] = partitions or partitions_def.get_partition_keys(
                dynamic_partitions_store=instance
            )
        else:
            keys_to_run = [None]
        for partition in keys_to_run:
            result = job.execute_in_process(
                instance=instance,
                asset_selection=keys,
                partition_key=partition,
                raise_on_error=False,
            )
            outcome = RunOutcome(
                result.run_id, [k.to_user_string() for k in keys], partition, result.success
            )
            on_run(outcome)
            outcomes.append(outcome)
    return outcomes
