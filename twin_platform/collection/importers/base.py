"""What an importer is: a kind, how to recognise its export, and how to read it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from twin_platform.collection.collected import Collected


@dataclass(frozen=True)
class ImportOptions:
    """What a source adds to its export: the public site (Substack exports lack real URLs)."""

    base_url: str | None = None


@dataclass(frozen=True)
class Importer:
    """`detect(root)` returns the file or folder this importer reads when the unpacked export at
    `root` is of its kind (else None); `read(that, author, options)` collects its documents."""

    kind: str
    detect: Callable[[Path], Path | None]
    read: Callable[[Path, str, ImportOptions], Collected]
