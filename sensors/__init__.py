"""Sensors: automation conditions evaluated continuously, and alerts on failed runs."""

import dagster as dg

automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    # The datasets' growth rule is Python that reads materializations: it runs in the code server.
    use_user_code_server=True,
    description="Keeps the graph fresh: evaluates every asset's AutomationCondition"
    " (assets/automation.py).",
)


from sensors.alerts import alert_on_run_failure  # noqa: E402
from sensors.authors import author_sources  # noqa: E402
from sensors.inbox import author_inbox  # noqa: E402

SENSORS = [automation_sensor, alert_on_run_failure, author_sources, author_inbox]
