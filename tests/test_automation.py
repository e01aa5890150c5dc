"""The automation rules: which asset runs by itself, when (assets/automation.py).

The conditions are evaluated the way the `automation` sensor does (`evaluate_automation_conditions`)
on a real instance, with materializations reported as runs would report them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from assets.automation import AutomationPolicy, DocumentsGrew, conditions, once_per_window
from twin_platform.datasets.freshness import GrowthRule
from twin_platform.settings import Settings

authors = dg.DynamicPartitionsDefinition(name="authors")
RULE = GrowthRule(min_new=10, min_share=0.1)


@pytest.mark.parametrize(
    ("current", "last_built", "in_production", "expected"),
    [
        (0, None, None, False),  # nothing to build from
        (40, None, None, True),  # a first dataset
        (105, 100, 100, False),  # 5 documents, 5%
        (110, 100, 100, True),  # 10 documents
        (22, 20, 20, True),  # 2 documents, but 10%
        (112, 112, 100, False),  # built already; its candidate did not make production
        (125, 112, 100, True),  # grown again since that build
        (90, 100, 100, False),  # documents removed
    ],
)
def test_growth_rule(
    current: int, last_built: int | None, in_production: int | None, expected: bool
) -> None:
    assert RULE.needs_rebuild(current, last_built, in_production) is expected


def test_every_asset_of_the_card_runs_by_itself() -> None:
    rules = conditions(AutomationPolicy.from_settings(Settings()))
    card = [
        "raw_articles",
        "features",
        "instruction_dataset",
        "preference_dataset",
        "sft_model",
        "dpo_model",
        "eval_report",
        "production_model",
        "quantized_model",
        "deployed_endpoint",
    ]
    assert [name for name in card if name not in rules] == []


def test_a_bad_cron_is_refused_at_load() -> None:
    with pytest.raises(ValueError, match="TWIN_TRAINING_WINDOW_CRON"):
        AutomationPolicy.from_settings(Settings(training_window_cron="every night"))


def _graph(model_condition: dg.AutomationCondition) -> dg.Definitions:
    """cleaned_documents -> instruction_dataset (the growth rule) -> model; production_model."""

    @dg.asset(partitions_def=authors)
    def cleaned_documents() -> None: ...

    @dg.asset(
        partitions_def=authors,
        deps=[cleaned_documents],
        automation_condition=dg.AutomationCondition.eager() & DocumentsGrew(RULE),
    )
    def instruction_dataset() -> None: ...

    @dg.asset(
        partitions_def=authors, deps=[instruction_dataset], automation_condition=model_condition
    )
    def sft_model() -> None: ...

    @dg.asset(partitions_def=authors)
    def production_model() -> None: ...

    return dg.Definitions(
        assets=[cleaned_documents, instruction_dataset, sft_model, production_model]
    )


def _report(instance: dg.DagsterInstance, asset: str, **metadata: int) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset, partition="ada", metadata=metadata)
    )


class Ticks:
    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
        self.defs, self.instance, self.cursor = defs, instance, None

    def __call__(self, asset: str, **kwargs: object) -> set[str | None]:
        result = dg.evaluate_automation_conditions(
            self.defs,
            self.instance,
            cursor=self.cursor,
            **kwargs,  # type: ignore[arg-type]
        )
        self.cursor = result.cursor
        return set(result.get_requested_partitions(dg.AssetKey(asset)))


def test_datasets_rebuild_only_when_documents_grew_enough() -> None:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("authors", ["ada"])
    tick = Ticks(_graph(dg.AutomationCondition.eager()), instance)
    assert tick("instruction_dataset") == set()

    _report(instance, "cleaned_documents", documents=100)
    assert tick("instruction_dataset") == {"ada"}, "a first dataset is built"
    _report(instance, "instruction_dataset", source_documents=100)
    _report(instance, "production_model", source_documents=100)
    assert tick("instruction_dataset") == set()

    _report(instance, "cleaned_documents", documents=105)
    assert tick("instruction_dataset") == set(), "5 new documents wait"
    _report(instance, "cleaned_documents", documents=110)
    assert tick("instruction_dataset") == {"ada"}, "10 new documents rebuild"
    _report(instance, "instruction_dataset", source_documents=110)
    assert tick("instruction_dataset") == set()

    # The candidate of that build failed its gate: production still has 100 documents.
    _report(instance, "cleaned_documents", documents=113)
    assert tick("instruction_dataset") == set(), "not rebuilt for 3 more documents"
    _report(instance, "cleaned_documents", documents=120)
    assert tick("instruction_dataset") == {"ada"}


def test_training_runs_once_per_window_and_never_a_backlog() -> None:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("authors", ["ada"])
    tick = Ticks(_graph(once_per_window("0 0 * * *")), instance)
    assert tick("sft_model") == set()
    _report(instance, "cleaned_documents", documents=100)
    _report(instance, "instruction_dataset", source_documents=100)
    assert tick("sft_model") == {"ada"}, "datasets changed in this window: train"
    _report(instance, "sft_model")
    assert tick("sft_model") == set()
    _report(instance, "instruction_dataset", source_documents=130)
    assert tick("sft_model") == set(), "a second change in the same window waits"


@pytest.mark.parametrize(
    ("condition", "trains"),
    [(once_per_window("0 0 * * *"), False), (dg.AutomationCondition.eager(), True)],
    ids=["once_per_window", "eager"],
)
def test_turning_automation_back_on_trains_no_backlog(
    condition: dg.AutomationCondition, trains: bool
) -> None:
    """Datasets changed while automation was off; it is turned back on two days later. Eager would
    train at once (the backlog); the training rule waits for a change in the current window."""
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("authors", ["ada"])
    tick = Ticks(_graph(condition), instance)
    _report(instance, "instruction_dataset", source_documents=100)
    _report(instance, "sft_model")
    assert tick("sft_model") == set()  # the last tick before the pause

    _report(instance, "instruction_dataset", source_documents=130)
    changed = instance.get_latest_materialization_event(dg.AssetKey("instruction_dataset"))
    assert changed is not None
    resumed = datetime.fromtimestamp(changed.timestamp + timedelta(days=2).total_seconds(), UTC)
    assert tick("sft_model", evaluation_time=resumed) == ({"ada"} if trains else set())
