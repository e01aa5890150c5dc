"""DPO's own yardstick on held-out pairs: does the tuned model prefer the author's text to the
generic answer more than its reference (the SFT model) does?

The implicit reward of an answer is beta * (log pi(answer) - log pi_ref(answer)); a pair is ranked
right when the author's text (chosen) earns more reward than the generated answer (rejected).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from twin_platform.evaluation.scoring import Messages, score_answers


@dataclass(frozen=True)
class PreferencePair:
    prompt: Messages
    chosen: str
    rejected: str


@dataclass(frozen=True)
class RewardResult:
    accuracy: float  # share of pairs where chosen out-earns rejected
    margin: float  # mean reward(chosen) - reward(rejected)
    pairs: int


def log_likelihoods(
    scorer: tuple[Any, Any], pairs: Sequence[PreferencePair], max_tokens: int
) -> tuple[list[float], list[float]]:
    """Summed log-probabilities of the chosen and of the rejected answers."""
    tokenizer, model = scorer
    chosen = score_answers(tokenizer, model, [(p.prompt, p.chosen) for p in pairs], max_tokens)
    rejected = score_answers(tokenizer, model, [(p.prompt, p.rejected) for p in pairs], max_tokens)
    return [-s.nll for s in chosen], [-s.nll for s in rejected]


def reward_accuracy(
    policy: tuple[list[float], list[float]],
    reference: tuple[list[float], list[float]],
    beta: float,
) -> RewardResult:
    """From `log_likelihoods` of the same pairs under the tuned model and its reference."""
    margins = [
        beta * ((pc - rc) - (pr - rr))
        for pc, pr, rc, rr in zip(policy[0], policy[1], reference[0], reference[1], strict=True)
    ]
    if not margins:
        return RewardResult(float("nan"), float("nan"), 0)
    return RewardResult(
        accuracy=sum(m > 0 for m in margins) / len(margins),
        margin=sum(margins) / len(margins),
        pairs=len(margins),
    )
