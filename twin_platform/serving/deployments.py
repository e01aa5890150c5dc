"""Deployment records: which version of an author's twin the API serves, one JSON file per author.

The `deployed_endpoint` asset writes a record, then asks a running API to load it; an API that
starts later reads the records. Each record keeps the one it replaced, so a rollback is a write of
that previous record.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twin_platform.collection.sources import AUTHOR_NAME
from twin_platform.fsutil import write_atomic


@dataclass(frozen=True)
class Deployment:
    """`gguf` is the quantized file served on CPU; `hf_path` the merged folder served on GPU;
    `adapter` the LoRA adapter on the base model that a vLLM server loads (None: a full fine-tune,
    or a record from before vLLM serving)."""

    author: str
    model: str  # registry name
    version: int
    gguf: str | None
    hf_path: str
    adapter: str | None = None
    deployed_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    previous: dict[str, Any] | None = None  # the record this one replaced

    @property
    def label(self) -> str:
        return f"{self.model}:{self.version}"


class DeploymentStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, author: str) -> Path:
        if not AUTHOR_NAME.match(author):  # a name from a URL never leaves the folder
            raise ValueError(f"not an author name: {author!r}")
        return self.folder / f"{author}.json"

    def get(self, author: str) -> Deployment | None:
        if not AUTHOR_NAME.match(author):
            return None  # no author of that name can have been deployed
        path = self._path(author)
        return Deployment(**json.loads(path.read_text())) if path.is_file() else None

    def all(self) -> list[Deployment]:
        if not self.folder.is_dir():
            return []
        return [self.get(p.stem) for p in sorted(self.folder.glob("*.json"))]  # type: ignore[misc]

    def record(self, deployment: Deployment) -> Deployment:
        """Write `deployment` as the author's current one, keeping the one it replaces."""
        current = self.get(deployment.author)
        previous = (
            {k: v for k, v in asdict(current).items() if k != "previous"} if current else None
        )
        saved = Deployment(**{**asdict(deployment), "previous": previous})
        write_atomic(self._path(deployment.author), json.dumps(asdict(saved), indent=2))
        return saved

    def restore(self, deployment: Deployment) -> None:
        """Write a record back exactly as it was (after a deployment the API refused)."""
        write_atomic(self._path(deployment.author), json.dumps(asdict(deployment), indent=2))

    def remove(self, author: str) -> None:
        self._path(author).unlink(missing_ok=True)

    def rollback(self, author: str) -> Deployment:
        current = self.get(author)
        if current is None or current.previous is None:
            raise LookupError(f"{author} has no earlier deployment to roll back to")
        return self.record(
            Deployment(**{**current.previous, "deployed_at": datetime.now(UTC).isoformat()})
        )
