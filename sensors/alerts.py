"""Alert on failed runs: the rotated alert log and, when TWIN_ALERT_WEBHOOK_URL is set, a chat webhook."""

from __future__ import annotations

import os

import dagster as dg

from twin_platform.alerts import AlertConfig, build_alert, send_alert
from twin_platform.settings import load_settings

_WRAPPERS = {"DagsterExecutionStepExecutionError", "DagsterUserCodeExecutionError"}


def failure_message(context: dg.RunFailureSensorContext) -> str:
    """The run's failure and its failed steps' errors (message only, no stack trace): what a
    person needs to act on, in a few lines."""
    lines = [context.failure_event.message or "run failed"]
    for event in context.get_step_failure_events():
        error = event.step_failure_data.error
        # Dagster wraps what the step raised; the user's exception is its cause.
        while error is not None and error.cause is not None and error.cls_name in _WRAPPERS:
            error = error.cause
        if error is not None:
            lines.append(f"{event.step_key}: {error.message.strip()}")
    return "\n".join(lines)


@dg.run_failure_sensor(
    name="alert_on_run_failure",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Each failed run: a line in TWIN_HOME/alerts.jsonl (size-capped, rotated) and a"
    " message to TWIN_ALERT_WEBHOOK_URL (Slack-compatible), secrets masked.",
)
def alert_on_run_failure(context: dg.RunFailureSensorContext) -> None:
    run = context.dagster_run
    alert = build_alert(run.run_id, run.job_name, failure_message(context), os.environ)
    delivery = send_alert(alert, AlertConfig.from_settings(load_settings()))
    context.log.error("run %s (%s) failed: %s", alert.run_id, alert.job, alert.error)
    if delivery.webhook is False:
        context.log.warning("the alert webhook did not take the alert; it is in the alert log")
