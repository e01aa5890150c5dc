"""Sensors: automation conditions evaluated continuously, and alerts on failed runs."""

import json
from datetime import UTC, datetime

import dagster as dg

from twin_platform.settings import load_settings

automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Keeps the graph fresh: evaluates every asset's AutomationCondition.",
)


@dg.run_failure_sensor(default_status=dg.DefaultSensorStatus.RUNNING)
def alert_on_run_failure(context: dg.RunFailureSensorContext) -> None:
    """Append each failed run to TWIN_HOME/alerts.jsonl, the hook for pagers and chat alerts."""
    alerts = load_settings().alerts_file
    alerts.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "at": datetime.now(UTC).isoformat(),
        "run_id": context.dagster_run.run_id,
        "job": context.dagster_run.job_name,
        "error": context.failure_event.message,
    }
    with alerts.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    context.log.error("run %s failed: %s", record["run_id"], record["error"])


from sensors.authors import author_sources  # noqa: E402

SENSORS = [automation_sensor, alert_on_run_failure, author_sources]
