"""Continuous training on the embedded default: an export dropped into an author's inbox becomes a
deployed twin through the platform's own sensors and automation conditions, with nobody launching
anything, on a tiny model built in code.

The daemon's work is driven in process: each tick evaluates the inbox sensor and every automation
condition (`dg.evaluate_automation_conditions`, what the `automation` sensor runs), then executes
what they requested, one run per partition as the daemon would. The trainers launch through Pipes
as in production. The model is a 2-layer Llama with the real SmolLM2 tokenizer, so every step runs
for real in seconds; what this proves is that the rules chain, not that a tiny model writes well.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import defaultdict
from pathlib import Path

import dagster as dg
import pytest

from twin_platform.registry import PRODUCTION, ModelRegistry, model_name
from twin_platform.serving.deployments import DeploymentStore
from twin_platform.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
AUTHOR = "tiny-author"
# Each stage's assets, in the order the automation must reach them.
STAGES = [
    ("collection", {"raw_articles"}),
    ("features", {"cleaned_documents", "chunks", "embedded_chunks"}),
    ("datasets", {"instruction_dataset", "preference_dataset"}),
    ("sft", {"sft_model"}),
    ("dpo", {"dpo_model"}),
    ("evaluation", {"eval_report"}),
    ("promotion", {"production_model"}),
    ("quantization", {"quantized_model"}),
    ("deployment", {"deployed_endpoint"}),
]


@pytest.fixture
def tiny_platform(
    tmp_path: Path,
    tiny_base: Path,
    postgres_url: str,
    mongodb_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """An empty sources file, and settings that make every model the tiny one."""
    sources = tmp_path / "authors.yaml"
    sources.write_text("authors: []\n")
    for name, value in {
        "TWIN_SOURCES_FILE": sources,
        "TWIN_BASE_MODEL": tiny_base,
        "TWIN_LLM_MODEL": f"twin-local/{tiny_base}",  # the rejected answers of the preference pairs
        "TWIN_DATASET_INSTRUCTIONS": "template",
        "TWIN_DATASET_HELDOUT_SHARE": "0.4",
        "TWIN_DATASET_MIN_SAMPLES": "2",
        "TWIN_EVAL_MIN_HELDOUT_DOCUMENTS": "2",
        "TWIN_EVAL_MARGIN_STYLE": "1.0",  # a random model's style is noise; the rest of the gate holds
        # One window a year: no window boundary falls inside the test.
        "TWIN_TRAINING_WINDOW_CRON": "0 0 1 1 *",
    }.items():
        monkeypatch.setenv(name, str(value))
    return sources


def drop_export(inbox: Path) -> Path:
    """Twelve of the sample author's articles as an export folder, copied in and settled."""
    export = inbox / AUTHOR / "substack-posts"
    export.mkdir(parents=True)
    for page in sorted((ROOT / "data/sample/exports/substack/posts").glob("*.html"))[:12]:
        shutil.copy(page, export / page.name)
    settled = time.time() - 60
    for path in export.iterdir():
        os.utime(path, (settled, settled))
    return export


class Daemon:
    """The sensors and the automation sensor of a Dagster daemon, ticked by hand."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
        self.defs, self.instance = defs, instance
        self.job = defs.resolve_implicit_global_asset_job_def()
        self.inbox_cursor: str | None = None
        self.automation_cursor = None
        self.ticks = 0

    def tick(self) -> list[tuple[str | None, list[dg.AssetKey]]]:
        """Evaluate, then run what was requested; returns the runs (partition, assets)."""
        from sensors.inbox import author_inbox

        self.ticks += 1
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.inbox_cursor, definitions=self.defs
        )
        result = author_inbox(context)
        requests: dict[str | None, list[dg.AssetKey]] = defaultdict(list)
        if isinstance(result, dg.SensorResult):
            self.inbox_cursor = result.cursor
            collect = self.defs.resolve_job_def("collect_documents")
            for request in result.run_requests or []:
                requests[request.partition_key] += list(collect.asset_layer.executable_asset_keys)
        evaluation = dg.evaluate_automation_conditions(
            self.defs, self.instance, cursor=self.automation_cursor
        )
        self.automation_cursor = evaluation.cursor
        for key in self.defs.resolve_asset_graph().get_all_asset_keys():
            for partition in evaluation.get_requested_partitions(key):
                requests[partition].append(key)
        runs = [(partition, sorted(set(keys))) for partition, keys in requests.items()]
        for partition, keys in runs:
            outcome = self.job.execute_in_process(
                instance=self.instance,
                asset_selection=keys,
                partition_key=partition,
                tags={"twin/tick": str(self.ticks)},
                raise_on_error=False,
            )
            errors = [
                f"{event.step_key}: {event.step_failure_data.error.message}"  # type: ignore[union-attr]
                for event in outcome.all_events
                if event.is_step_failure
            ]
            assert outcome.success, f"tick {self.ticks}: {keys} [{partition}] failed: {errors}"
        return runs


def materialized_in_order(instance: dg.DagsterInstance) -> list[set[str]]:
    """Per run, oldest first: the asset names it materialized."""
    runs = []
    for record in reversed(instance.get_run_records()):
        names = {
            event.asset_key.to_user_string()
            for event in (e.dagster_event for e in instance.all_logs(record.dagster_run.run_id))
            if event is not None and event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
        }
        runs.append(names)
    return runs


def test_an_export_in_the_inbox_becomes_a_deployed_twin(tiny_platform: Path) -> None:
    from definitions import defs

    settings = load_settings()
    instance = dg.DagsterInstance.ephemeral()
    daemon = Daemon(defs, instance)
    assert daemon.tick() == [(None, [dg.AssetKey("base_model")])], "the base model, once"
    assert daemon.tick() == [], "nothing more to do before an export lands"

    started = time.perf_counter()
    drop_export(settings.inbox_dir)
    for _ in range(12):
        if not daemon.tick():
            break
    seconds = time.perf_counter() - started
    assert daemon.tick() == [], "a tick with no new data launches nothing"

    runs = materialized_in_order(instance)
    first_run = {
        stage: next((i for i, names in enumerate(runs) if assets <= names), None)
        for stage, assets in STAGES
    }
    assert None not in first_run.values(), f"stages not reached: {first_run}; runs: {runs}"
    order = [first_run[stage] for stage, _ in STAGES]
    assert order == sorted(order), f"stages out of order: {first_run}"

    evaluation = instance.get_latest_materialization_event(dg.AssetKey("eval_report"))
    assert evaluation is not None
    metadata = evaluation.asset_materialization.metadata  # type: ignore[union-attr]
    assert metadata["heldout_documents"].value >= 2
    assert metadata["candidate/perplexity"].value < metadata["base/perplexity"].value
    registry = ModelRegistry.from_settings(settings)
    production = registry.resolve(model_name(AUTHOR), PRODUCTION)
    assert production is not None and production.manifest["lineage"]["stage"] == "dpo"
    deployment = DeploymentStore(settings.deployments_dir).get(AUTHOR)
    assert deployment is not None and deployment.version == production.version
    assert deployment.gguf is not None and Path(deployment.gguf).stat().st_size > 0
    # About 140 s on a quiet 2-core machine and 310 s on a slow one: the bound catches a stall or a
    # loop of runs, not a slow machine.
    assert seconds < 480, f"export to deployment took {seconds:.0f} s"
