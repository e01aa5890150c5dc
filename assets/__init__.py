"""The asset graph, one module per stage. `definitions.py` loads every module listed here."""

from assets import (
    analytics,
    datasets,
    evaluation,
    features,
    feedback,
    monitoring,
    platform,
    raw_documents,
    serving,
    training,
)

ASSET_MODULES = [
    platform,
    raw_documents,
    features,
    feedback,
    datasets,
    training,
    evaluation,
    serving,
    monitoring,
    analytics,
]
