"""Asset jobs: named selections that people launch from the UI, the CLI or a schedule."""

import dagster as dg

platform_job = dg.define_asset_job(
    "platform_setup",
    selection=dg.AssetSelection.groups("platform"),
    description="Create or migrate the stores' schema and indexes.",
)

from jobs.collection import add_author, collect_job  # noqa: E402

JOBS = [platform_job, collect_job, add_author]
