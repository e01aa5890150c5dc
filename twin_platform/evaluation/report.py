"""What an evaluation found, as one object: tables and plots for the UI, rows for Postgres."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from twin_platform.evaluation.judge import JudgeScores
from twin_platform.evaluation.preference import RewardResult
from twin_platform.reporting import figure, image_markdown, markdown_table

ROLES = ("base", "production", "sft", "candidate")


@dataclass
class ModelEval:
    """One model's judge-free scores on the held-out set. `model` names it (registry or path)."""

    role: str  # base, sft, candidate (the DPO model), production
    model: str
    perplexity: float | None = None
    style_similarity: float | None = None
    tokens_per_second: float | None = None
    seconds_per_answer: float | None = None


@dataclass(frozen=True)
class RetrievalScores:
    hit_rate: float
    mrr: float
    queries: int
    k: int


@dataclass(frozen=True)
class CitationScores:
    answers: int
    only_retrieved: float  # share of answers whose every citation names a retrieved passage
    dropped: int  # citations and URLs that named nothing retrieved


@dataclass
class EvalReport:
    author: str
    candidate: str
    heldout_documents: int
    heldout_rows: int
    models: dict[str, ModelEval] = field(default_factory=dict)
    reward: RewardResult | None = None
    retrieval: RetrievalScores | None = None
    citations: CitationScores | None = None
    judge: dict[str, JudgeScores] = field(default_factory=dict)  # role -> the judge's scores
    samples: list[dict[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # why the report cannot support a promotion
    seconds: float = 0.0

    def metric_rows(self) -> list[tuple[str, str, float]]:
        """(model role, metric, value) for every number, as the eval_results table stores them."""
        rows: list[tuple[str, str, float]] = []
        for role, scores in self.models.items():
            for metric in (
                "perplexity",
                "style_similarity",
                "tokens_per_second",
                "seconds_per_answer",
            ):
                value = getattr(scores, metric)
                if value is not None and math.isfinite(value):
                    rows.append((role, metric, float(value)))
        if self.reward is not None and self.reward.pairs:
            rows += [
                ("candidate", "dpo_reward_accuracy", self.reward.accuracy),
                ("candidate", "dpo_reward_margin", self.reward.margin),
            ]
        if self.retrieval is not None:
            rows += [
                ("retrieval", f"hit_rate_at_{self.retrieval.k}", self.retrieval.hit_rate),
                ("retrieval", "mrr", self.retrieval.mrr),
            ]
        if self.citations is not None and self.citations.answers:
            rows.append(("candidate", "citations_only_retrieved", self.citations.only_retrieved))
        for role, judged in self.judge.items():
            rows += [
                (role, f"judge_{metric}", value)
                for metric, value in judged.scores.items()
                if value is not None
            ]
        return rows

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        lines = [
            f"# Evaluation of {self.candidate} ({self.author})",
            "",
            f"Held-out set: {self.heldout_documents} documents, {self.heldout_rows} rows no"
            " training saw.",
            "",
        ]
        if self.problems:
            lines += ["**Cannot support a promotion:**", *[f"- {p}" for p in self.problems], ""]
        lines += ["## Models", "", models_table(self), ""]
        if self.reward is not None:
            lines += [
                f"DPO reward accuracy on {self.reward.pairs} held-out pairs:"
                f" {self.reward.accuracy:.3f} (mean margin {self.reward.margin:.3f}).",
                "",
            ]
        if self.retrieval is not None:
            r = self.retrieval
            lines += [
                f"Retrieval: hit rate@{r.k} {r.hit_rate:.3f}, MRR {r.mrr:.3f} over {r.queries}"
                " held-out queries.",
                "",
            ]
        if self.citations is not None:
            c = self.citations
            lines += [
                f"Citations: {c.only_retrieved:.0%} of {c.answers} RAG answers cite only retrieved"
                f" passages ({c.dropped} invented citations or URLs dropped).",
                "",
            ]
        for role, judged in self.judge.items():
            label = " (tiny judge: reported, never gating)" if judged.tiny else ""
            scores = ", ".join(
                f"{m} {'missing' if v is None else f'{v:.2f}'}" for m, v in judged.scores.items()
            )
            lines += [f"Judge `{judged.model}` on {role}{label}: {scores}.", ""]
        if self.samples:
            lines += ["## Samples", "", markdown_table(self.samples, width=200), ""]
        return "\n".join(lines)


def models_table(report: EvalReport) -> str:
    rows = [
        {
            "role": role,
            "model": m.model,
            "held-out perplexity": m.perplexity,
            "style similarity": m.style_similarity,
            "tokens/s": m.tokens_per_second,
            "s/answer": m.seconds_per_answer,
        }
        for role in ROLES
        if (m := report.models.get(role)) is not None
    ]
    return markdown_table(rows)


def perplexity_plot(report: EvalReport) -> str:
    """Held-out perplexity and style similarity per model, side by side."""
    roles = [r for r in ROLES if r in report.models]
    with figure(f"held-out evaluation of {report.author}", size=(9, 3.2), ncols=2) as (fig, axes):
        left, right = axes
        left.bar(roles, [report.models[r].perplexity or 0 for r in roles], color="#4c72b0")
        left.set_title("perplexity (lower is better)")
        right.bar(roles, [report.models[r].style_similarity or 0 for r in roles], color="#55a868")
        right.set_title("style similarity (higher is better)")
        return image_markdown(fig, "held-out evaluation")
