"""Materialize an asset selection in this process, against the instance the UI reads.

A selection may mix unpartitioned assets with assets partitioned by author; one Dagster run holds one
partition, so the selection is cut into topologically ordered segments and each partition of a
partitioned segment gets its own run.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

# Step events at INFO on the console; the UI keeps every event.
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    assets: list[str]
    partition: str | None
    success: bool


def plan_segments(defs: dg.Definitions, selection: str) -> list[tuple[bool, list[dg.AssetKey]]]:
    """Selected asset keys as (partitioned?, keys) segments, in dependency order, as few as possible.

    Unpartitioned and partitioned assets alternate; each segment takes every asset of its kind whose
    selected upstream assets are already planned.
    """
    graph = defs.resolve_asset_graph()
    try:
        selected = dg.AssetSelection.from_string(selection).resolve(graph)
    except dg.DagsterError as exc:  # unknown keys, syntax errors
        raise ValueError(f"selection {selection!r} matches no asset: {exc}") from exc
    remaining = [
        k for k in graph.toposorted_asset_keys if k in selected and graph.get(k).is_materializable
    ]
    if not remaining:
        raise ValueError(f"selection {selection!r} matches no asset")
    planned: set[dg.AssetKey] = set()
    segments: list[tuple[bool, list[dg.AssetKey]]] = []
    while remaining:
        for partitioned in (False, True):
            segment: list[dg.AssetKey] = []
            for key in remaining:
                node = graph.get(key)
                upstream = set(node.parent_keys) & set(remaining)
                if (node.partitions_def is not None) == partitioned and upstream <= set(segment):
                    segment.append(key)
            if segment:
                segments.append((partitioned, segment))
                planned.update(segment)
                remaining = [k for k in remaining if k not in planned]
    return segments


def materialize(
    defs: dg.Definitions,
    selection: str,
    instance: dg.DagsterInstance,
    partitions: Sequence[str] | None = None,
    run_config: dict[str, Any] | None = None,
    on_run: Callable[[RunOutcome], None] = lambda outcome: None,
) -> list[RunOutcome]:
    """Run the selection; `partitions` limits partitioned assets (default: every known partition).

    `run_config` holds op configs by op name (an asset's name, or its multi-asset's); each run gets
    those of the assets it runs.
    """
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
            ops = _op_configs(defs, run_config, keys)
            result = job.execute_in_process(
                run_config=QUIET_LOGS | ({"ops": ops} if ops else {}),
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


def _op_configs(
    defs: dg.Definitions, run_config: dict[str, Any] | None, keys: Sequence[dg.AssetKey]
) -> dict[str, Any]:
    """The entries of `run_config` (op name -> {"config": ...}) for the ops of these assets."""
    ops = {defs.resolve_assets_def(key).op.name for key in keys}
    return {name: config for name, config in (run_config or {}).items() if name in ops}


def write_report(outcomes: Sequence[RunOutcome], instance: dg.DagsterInstance, path: Path) -> Path:
    """A Markdown summary of the runs: each asset's scalar metadata and each check's result."""
    lines = ["# Twin Platform run report", ""]
    for outcome in outcomes:
        where = f" [{outcome.partition}]" if outcome.partition else ""
        lines += [f"## {'ok' if outcome.success else 'FAILED'}{where}: run `{outcome.run_id}`", ""]
        for record in instance.all_logs(outcome.run_id):
            event = record.dagster_event
            if event is None:
                continue
            if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
                materialization = event.step_materialization_data.materialization
                lines.append(f"- **{materialization.asset_key.to_user_string()}**")
                for name, value in materialization.metadata.items():
                    if isinstance(value.value, (int, float)) or (
                        isinstance(value.value, str) and len(value.value) <= 120
                    ):
                        lines.append(f"  - {name}: {value.value}")
            elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
                evaluation = event.event_specific_data
                verdict = "passed" if evaluation.passed else "FAILED"
                lines.append(
                    f"- check `{evaluation.check_name}` on {evaluation.asset_key.to_user_string()}: {verdict}"
                )
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path
