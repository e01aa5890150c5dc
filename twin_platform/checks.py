"""The one shape of a data check's outcome; the Dagster layer turns it into an asset check result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CheckResult:
    """`name` is the asset check's name; `metadata` holds plain values (numbers, strings, lists)."""

    name: str
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)
