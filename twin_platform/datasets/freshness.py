"""When an author's datasets are worth rebuilding: enough new documents, not every new post.

A rebuild regenerates instructions and, through the datasets, starts a new training candidate, so it
waits until the author's cleaned documents grew by `min_new` documents or by `min_share` of what the
production model was trained on. It also compares with the latest dataset build, so a candidate that
failed its gate is not rebuilt again until the same growth has happened since.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twin_platform.datasets.artifact import DatasetArtifact
from twin_platform.registry import ModelRegistry, ModelVersion


@dataclass(frozen=True)
class GrowthRule:
    min_new: int
    min_share: float

    def grew(self, current: int, baseline: int) -> bool:
        new = current - baseline
        if new <= 0:
            return False
        return new >= self.min_new or (baseline > 0 and new / baseline >= self.min_share)

    def needs_rebuild(
        self, current: int | None, last_built: int | None, in_production: int | None
    ) -> bool:
        """`current`: the author's cleaned documents now; `last_built`: those the latest dataset was
        built from; `in_production`: those behind the production model's dataset (None: none yet)."""
        if not current:
            return False
        if last_built is None:
            return True
        if not self.grew(current, last_built):
            return False
        return in_production is None or self.grew(current, in_production)


def source_documents(dataset: DatasetArtifact) -> int | None:
    """The cleaned documents a dataset version was built from (recorded in its card)."""
    try:
        documents = dataset.card().get("curation", {}).get("documents")
    except OSError:  # a version built on another machine, not copied here
        return None
    return int(documents) if documents is not None else None


def training_documents(registry: ModelRegistry, version: ModelVersion) -> int | None:
    """The cleaned documents behind the instruction dataset a model version descends from: a DPO
    model's own dataset is the preference one, so its SFT parent is followed."""
    lineage: dict[str, Any] = version.manifest.get("lineage", {})
    dataset = lineage.get("dataset")
    if dataset and dataset.get("kind") == "instruction":
        return source_documents(DatasetArtifact.from_dict(dataset))
    parent = lineage.get("parent")
    if parent is None:
        return None
    return training_documents(registry, registry.get(parent["name"], int(parent["version"])))
