"""The library's `CheckResult` as Dagster's `AssetCheckResult`: one translation for every check."""

from __future__ import annotations

import dagster as dg

from twin_platform.checks import CheckResult


def asset_check_result(
    result: CheckResult,
    asset_key: dg.AssetKey | str | None = None,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetCheckResult:
    metadata: dict[str, dg.RawMetadataValue] = {
        name: dg.MetadataValue.json(value) if isinstance(value, list | dict) else value
        for name, value in result.metadata.items()
    }
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=result.name,
        passed=result.passed,
        severity=severity,
        description=result.description,
        metadata=metadata,
    )
