"""The one Dagster `Definitions` of Twin Platform, loaded by workspace.yaml, `dg` and the CLI."""

import dagster as dg

from assets import ASSET_MODULES, analytics, automation
from jobs import JOBS
from resources import build_resources
from sensors import SENSORS
from twin_platform.settings import load_settings

EXECUTORS = {"in_process": dg.in_process_executor, "multiprocess": dg.multiprocess_executor}

settings = load_settings()
defs = dg.Definitions(
    assets=automation.apply(
        [*dg.load_assets_from_modules(ASSET_MODULES), *analytics.EXTERNAL_TABLES],
        automation.AutomationPolicy.from_settings(settings),
    ),
    asset_checks=dg.load_asset_checks_from_modules(ASSET_MODULES),
    resources=build_resources(),
    jobs=JOBS,
    sensors=SENSORS,
    # Locally, steps share one process (each new one pays seconds of imports on small machines).
    executor=EXECUTORS[settings.executor],
)
