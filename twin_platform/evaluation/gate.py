"""The promotion gate: may the candidate replace production? One check per question.

Every comparison is made within one evaluation, on the same held-out rows: the candidate against
the base model and against the current production model. Retrieval does not depend on the model,
so it is compared with the evaluation that promoted the current production model. A tiny judge's
scores never gate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from twin_platform.checks import CheckResult
from twin_platform.evaluation.report import EvalReport
from twin_platform.settings import Settings


@dataclass(frozen=True)
class GateMargins:
    """How much worse than production the candidate may be before the gate closes."""

    perplexity: float = 0.0  # share: 0.02 lets the candidate be 2% worse
    style: float = 0.02  # absolute cosine
    retrieval: float = 0.05  # absolute hit rate
    judge: float = 0.1  # absolute, on the 1-3 scale
    min_heldout_documents: int = 3

    @classmethod
    def from_settings(cls, settings: Settings) -> GateMargins:
        return cls(
            perplexity=settings.eval_margin_perplexity,
            style=settings.eval_margin_style,
            retrieval=settings.eval_margin_retrieval,
            judge=settings.eval_margin_judge,
            min_heldout_documents=settings.eval_min_heldout_documents,
        )


GATE_CHECKS = {
    "enough_heldout_data": "The author has enough held-out documents to judge a model on.",
    "perplexity_below_base": "The candidate models the author's unseen text better than the base.",
    "perplexity_not_worse_than_production": "Not worse than the production model on the same rows.",
    "style_not_worse": "Answers at least as close to the author's text as base and production.",
    "retrieval_unchanged": "Retrieval still finds held-out documents as well as when production"
    " was promoted.",
    "judge_not_worse": "With a capable judge configured: its scores are not below production's.",
}


def _value(report: EvalReport, role: str, metric: str) -> float | None:
    model = report.models.get(role)
    value = getattr(model, metric) if model is not None else None
    return value if value is not None and math.isfinite(value) else None


def gate(
    report: EvalReport, margins: GateMargins, promoted_retrieval: float | None
) -> list[CheckResult]:
    """Every gate check, passed or not, with the numbers it compared."""
    enough = report.heldout_documents >= margins.min_heldout_documents and report.heldout_rows > 0
    results = [
        CheckResult(
            "enough_heldout_data",
            enough and not report.problems,
            "; ".join(report.problems)
            or f"{report.heldout_documents} held-out documents (need {margins.min_heldout_documents})",
            {"heldout_documents": report.heldout_documents, "heldout_rows": report.heldout_rows},
        )
    ]
    candidate = _value(report, "candidate", "perplexity")
    base = _value(report, "base", "perplexity")
    production = _value(report, "production", "perplexity")
    results.append(
        CheckResult(
            "perplexity_below_base",
            candidate is not None and base is not None and candidate < base,
            f"candidate {candidate} against base {base}",
            {"candidate": candidate, "base": base},
        )
    )
    limit = None if production is None else production * (1 + margins.perplexity)
    results.append(
        CheckResult(
            "perplexity_not_worse_than_production",
            candidate is not None and (limit is None or candidate <= limit),
            f"candidate {candidate} against production {production}"
            if production is not None
            else "no production model yet",
            {"candidate": candidate, "production": production, "limit": limit},
        )
    )
    style = _value(report, "candidate", "style_similarity")
    others = [
        v for role in ("base", "production") if (v := _value(report, role, "style_similarity"))
    ]
    floor = max(others) - margins.style if others else None
    results.append(
        CheckResult(
            "style_not_worse",
            style is not None and (floor is None or style >= floor),
            f"candidate {style} against the best of base and production minus {margins.style}",
            {"candidate": style, "floor": floor},
        )
    )
    hit_rate = report.retrieval.hit_rate if report.retrieval is not None else None
    results.append(
        CheckResult(
            "retrieval_unchanged",
            promoted_retrieval is None
            or (hit_rate is not None and hit_rate >= promoted_retrieval - margins.retrieval),
            f"hit rate {hit_rate} against {promoted_retrieval} when production was promoted",
            {"hit_rate": hit_rate, "at_promotion": promoted_retrieval},
        )
    )
    results.append(_judge_check(report, margins))
    return results


def _judge_check(report: EvalReport, margins: GateMargins) -> CheckResult:
    candidate, production = report.judge.get("candidate"), report.judge.get("production")
    if candidate is None or candidate.tiny:
        why = "no judge configured" if candidate is None else "tiny judge: reported, never gating"
        return CheckResult("judge_not_worse", True, why, {})
    if production is None:
        return CheckResult("judge_not_worse", True, "no production model to compare", {})
    worse = {
        metric: (value, production.scores.get(metric))
        for metric, value in candidate.scores.items()
        if value is not None
        and production.scores.get(metric) is not None
        and value < production.scores[metric] - margins.judge  # type: ignore[operator]
    }
    return CheckResult(
        "judge_not_worse",
        not worse,
        f"worse than production on {sorted(worse)}" if worse else "not worse than production",
        {"candidate": candidate.scores, "production": production.scores},
    )
