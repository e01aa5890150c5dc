"""The graph's automation rules in one place: what makes each asset run by itself.

The `automation` sensor evaluates these conditions (Dagster's Automation page shows each one's
evaluations); the `author_sources` and `author_inbox` sensors start collection.

- raw_articles, raw_posts, raw_repositories: a source is added or edited, or an export lands in
  the author's inbox (sensors), and every TWIN_COLLECTION_CRON.
- features and SQL models: eager, when an upstream changed.
- instruction_dataset (preference_dataset with it): the author's cleaned documents grew by
  TWIN_DATASET_MIN_NEW_DOCUMENTS or TWIN_DATASET_MIN_GROWTH since the production model's data
  (and since the latest build).
- reviewed_feedback: once per new author (then a review, `twin feedback approve|reject`, runs it).
- base_model: once, when missing (a new TWIN_BASE_MODEL is materialized by hand, since it
  retrains every author).
- sft_model, dpo_model (`gpu` pool): their datasets changed in the current TWIN_TRAINING_WINDOW_CRON
  window; at most once per window.
- eval_report: a new candidate (dpo_model).
- production_model: a new evaluation; its blocking gate checks must pass.
- quantized_model, deployed_endpoint: a new production model.
- api_traffic: hourly.

Training follows Dagster's recipe for preventing runs on reactivation: it counts only dataset
updates since the window's cron tick, so turning automation back on after a pause trains what
changed in the current window, never a backlog.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg
from dagster._utils.schedules import is_valid_cron_string

from twin_platform.datasets.freshness import GrowthRule
from twin_platform.settings import Settings

AC = dg.AutomationCondition


@dataclass(frozen=True)
class AutomationPolicy:
    collection_cron: str
    training_window_cron: str
    dataset_growth: GrowthRule

    @classmethod
    def from_settings(cls, settings: Settings) -> AutomationPolicy:
        for name in ("collection_cron", "training_window_cron"):
            if not is_valid_cron_string(getattr(settings, name)):
                raise ValueError(
                    f"TWIN_{name.upper()}: not a cron schedule: {getattr(settings, name)!r}"
                )
        return cls(
            settings.collection_cron,
            settings.training_window_cron,
            GrowthRule(settings.dataset_min_new_documents, settings.dataset_min_growth),
        )


def _latest_metadata(
    instance: dg.DagsterInstance, asset: str, partition: str, field: str
) -> int | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    value = records[0].asset_materialization.metadata.get(field)
    return int(value.value) if value is not None and value.value is not None else None  # type: ignore[arg-type]


class DocumentsGrew(dg.AutomationCondition[dg.AssetKey]):
    """True for the authors whose cleaned documents grew enough to rebuild their datasets (see
    `twin_platform.datasets.freshness`); counts come from the materializations' metadata."""

    def __init__(self, rule: GrowthRule) -> None:
        self.rule = rule

    @property
    def name(self) -> str:
        return f"documents_grew(min_new={self.rule.min_new}, min_share={self.rule.min_share})"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:  # type: ignore[override]
        instance = context.asset_graph_view.instance
        grown = {
            author
            for author in context.candidate_subset.expensively_compute_partition_keys()
            if self.rule.needs_rebuild(
                current=_latest_metadata(instance, "cleaned_documents", author, "documents"),
                last_built=_latest_metadata(
                    instance, "instruction_dataset", author, "source_documents"
                ),
                in_production=_latest_metadata(
                    instance, "production_model", author, "source_documents"
                ),
            )
        }
        true_subset = context.candidate_subset.compute_intersection_with_partition_keys(grown)
        return dg.AutomationResult(context, true_subset)


def after(*assets: str) -> dg.AutomationCondition:
    """Eager, but only an update of `assets` counts (not, say, a new dataset under a model)."""
    return (
        AC.in_latest_time_window()
        & AC.any_deps_updated().allow(dg.AssetSelection.assets(*assets)).since_last_handled()
        & ~AC.any_deps_missing()
        & ~AC.any_deps_in_progress()
        & ~AC.in_progress()
    ).with_label(f"after({', '.join(assets)})")


def once_per_window(cron: str) -> dg.AutomationCondition:
    """Dagster's recipe for expensive (GPU) assets: only a dependency updated since the window's
    cron tick (by a run that did not already target this asset) counts, so the backlog of a paused
    sensor never does. The recipe's `newly_true` becomes "not requested yet in this window", which
    also waits for dependencies that are still missing or running."""
    tick = AC.cron_tick_passed(cron)
    changed_in_window = AC.any_deps_match(
        AC.newly_updated().since(tick) & ~AC.executed_with_root_target()
    )
    return (
        AC.in_latest_time_window()
        & changed_in_window
        & ~AC.newly_requested().since(tick)
        & ~AC.any_deps_missing()
        & ~AC.any_deps_in_progress()
        & ~AC.in_progress()
    ).with_label(f"once_per_window({cron})")


def conditions(policy: AutomationPolicy) -> dict[str, dg.AutomationCondition]:
    """Asset name (or group, for the eager ones) -> condition."""
    eager = AC.eager()
    collection = AC.on_cron(policy.collection_cron)
    training = once_per_window(policy.training_window_cron)
    once_when_missing = AC.missing().newly_true().with_label("once_when_missing")
    return {
        "raw_articles": collection,
        "raw_posts": collection,
        "raw_repositories": collection,
        "features": eager,
        "analytics": eager,
        "instruction_dataset": (eager & DocumentsGrew(policy.dataset_growth)).with_label(
            "datasets_stale"
        ),
        "preference_dataset": eager,
        # Once (on_missing would skip an asset missing since the condition was added).
        "base_model": once_when_missing,
        # Once per new author, so the preference dataset is never held up; then only reviews.
        "reviewed_feedback": once_when_missing,
        "sft_model": training,
        "dpo_model": training,
        "eval_report": after("dpo_model"),
        "production_model": eager,
        "quantized_model": after("production_model"),
        "deployed_endpoint": eager,
        "api_traffic": AC.on_cron("0 * * * *"),
    }


def apply(
    assets: Sequence[dg.AssetsDefinition | dg.AssetSpec], policy: AutomationPolicy
) -> list[dg.AssetsDefinition | dg.AssetSpec]:
    """The assets with their conditions, looked up by asset name, then by group."""
    rules = conditions(policy)

    def with_condition(spec: dg.AssetSpec) -> dg.AssetSpec:
        name = spec.key.to_user_string()
        rule = rules.get(name) or rules.get(spec.group_name or "")
        return spec.replace_attributes(automation_condition=rule) if rule else spec

    return [
        item.map_asset_specs(with_condition)
        if isinstance(item, dg.AssetsDefinition)
        else with_condition(item)
        for item in assets
    ]
