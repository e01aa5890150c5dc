"""Prompt monitoring: a summary of the API's recent traffic, refreshed hourly, with an error-rate check."""

import dagster as dg
from pydantic import Field

from resources import PostgresResource
from twin_platform import monitoring


class TrafficConfig(dg.Config):
    window_hours: float = Field(default=24.0, gt=0, description="How far back to summarise.")


@dg.asset(
    group_name="monitoring",
    deps=["feature_store_schema"],
    kinds={"postgres", "fastapi"},
)
def api_traffic(config: TrafficConfig, postgres: PostgresResource) -> dg.MaterializeResult:
    """Requests, error rate, latency percentiles per stage and user feedback of the RAG API."""
    with postgres.connection() as conn:
        summary = monitoring.summarize(conn, config.window_hours)
    total = summary.latency_percentiles_ms.get("total", {})
    return dg.MaterializeResult(
        metadata={
            "window_hours": config.window_hours,
            "requests": summary.requests,
            "errors": summary.errors,
            "error_rate": round(summary.error_rate, 4),
            "p50_ms": total.get("p50", 0.0),
            "p95_ms": total.get("p95", 0.0),
            "p99_ms": total.get("p99", 0.0),
            "requests_by_route": dg.MetadataValue.json(summary.by_route),
            "feedback": dg.MetadataValue.json(summary.feedback),
            "latency_by_stage": dg.MetadataValue.md(monitoring.summary_markdown(summary)),
            "traffic": dg.MetadataValue.md(monitoring.traffic_plot(summary)),
        }
    )


@dg.asset_check(asset=api_traffic, description="Less than 5% of recent requests failed.")
def api_error_rate(postgres: PostgresResource) -> dg.AssetCheckResult:
    with postgres.connection() as conn:
        summary = monitoring.summarize(conn, hours=1)
    return dg.AssetCheckResult(
        passed=summary.error_rate < 0.05,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "requests_last_hour": summary.requests,
            "error_rate": round(summary.error_rate, 4),
        },
    )
