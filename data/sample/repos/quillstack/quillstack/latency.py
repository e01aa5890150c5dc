"""Latency percentiles from merged histograms, and the p99 alert rule.

Percentiles do not average. Merge the histograms, then compute the percentile.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_BUCKETS_MS = (25, 50, 100, 200, 400, 800, 1500, 3000, 6000)
ALERT_P99_MS = 800
PAGE_P99_MS = 1500


@dataclass
class Histogram:
    """Counts per bucket; bucket i holds values <= edges[i], the last bucket everything above."""

    edges: tuple[int, ...] = DEFAULT_BUCKETS_MS
    counts: list[int] = field(default_factory=lambda: [0] * (len(DEFAULT_BUCKETS_MS) + 1))

    def observe(self, value_ms: float) -> None:
        for i, edge in enumerate(self.edges):
            if value_ms <= edge:
                self.counts[i] += 1
                return
        self.counts[-1] += 1

    @classmethod
    def merge(cls, histograms: list[Histogram]) -> Histogram:
        if not histograms:
            raise ValueError("nothing to merge")
        edges = histograms[0].edges
        if any(h.edges != edges for h in histograms):
            raise ValueError("cannot merge histograms with different bucket edges")
        merged = cls(edges=edges, counts=[0] * (len(edges) + 1))
        for h in histograms:
            merged.counts = [a + b for a, b in zip(merged.counts, h.counts, strict=True)]
        return merged

    def percentile(self, p: float) -> float:
        """Upper edge of the bucket holding the p-th percentile: honest, slightly pessimistic."""
        total = sum(self.counts)
        if total == 0:
            raise ValueError("empty histogram")
        rank = total * p / 100
        seen = 0
        for i, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return float(self.edges[i]) if i < len(self.edges) else float("inf")
        return float("inf")


def should_alert(window_p99_ms: list[float], threshold_ms: float = ALERT_P99_MS) -> bool:
    """True when the last two 5-minute windows both breach the threshold.

    One slow window is weather (a deploy, a cold cache). Two in a row is a pattern.
    """
    return len(window_p99_ms) >= 2 and all(v > threshold_ms for v in window_p99_ms[-2:])


def should_page(window_p99_ms: list[float], alert_minutes_firing: int) -> bool:
    """Page above 1500 ms, or when the 800 ms alert has fired for 30 minutes."""
    return bool(window_p99_ms and window_p99_ms[-1] > PAGE_P99_MS) or alert_minutes_firing >= 30
