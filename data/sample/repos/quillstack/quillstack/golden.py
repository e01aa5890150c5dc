"""Golden-set retrieval evaluation: hit rate at k, MRR, and the worst questions."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Question:
    question: str
    expected: str
    why: str = ""


@dataclass(frozen=True)
class Result:
    question: Question
    rank: int | None  # 1-based position of the expected document, None if not retrieved


@dataclass(frozen=True)
class Report:
    results: list[Result]

    @property
    def hit_rate(self) -> float:
        return sum(r.rank is not None for r in self.results) / len(self.results)

    @property
    def mrr(self) -> float:
        return sum(1 / r.rank for r in self.results if r.rank) / len(self.results)

    def worst(self, n: int = 10) -> list[Result]:
        """Misses first, then the lowest-ranked hits: the list people actually read."""
        return sorted(self.results, key=lambda r: -(r.rank or 10_000))[:n]


def load(path: Path) -> list[Question]:
    with path.open() as handle:
        return [Question(**json.loads(line)) for line in handle if line.strip()]


def evaluate(golden: list[Question], search: Callable[[str, int], list[str]], k: int = 5) -> Report:
    if not golden:
        raise ValueError("an empty golden set measures nothing")
    results = []
    for q in golden:
        ids = search(q.question, k)
        rank = ids.index(q.expected) + 1 if q.expected in ids else None
        results.append(Result(q, rank))
    return Report(results)
