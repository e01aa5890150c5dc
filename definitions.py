"""The one Dagster `Definitions` of Twin Platform, loaded by workspace.yaml, `dg` and the CLI."""

import dagster as dg

from assets import ASSET_MODULES
from jobs import JOBS
from resources import build_resources
from sensors import SENSORS

defs = dg.Definitions(
    assets=dg.load_assets_from_modules(ASSET_MODULES),
    asset_checks=dg.load_asset_checks_from_modules(ASSET_MODULES),
    resources=build_resources(),
    jobs=JOBS,
    sensors=SENSORS,
    # Steps share one process: each new process pays seconds of imports on these small machines.
    executor=dg.in_process_executor,
)
