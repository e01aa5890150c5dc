"""Checks on a written dataset, run as Dagster asset checks: they read the files, not the build's memory."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twin_platform.datasets.artifact import SPLITS, DatasetArtifact
from twin_platform.datasets.curation import ngrams, normalize

ROLES = {
    "instruction": {"messages": ["system", "user", "assistant"]},
    "preference": {
        "prompt": ["system", "user"],
        "chosen": ["assistant"],
        "rejected": ["assistant"],
    },
}


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _conversations(row: dict[str, Any], kind: str) -> dict[str, Any]:
    return {name: row.get(name) for name in ROLES[kind]}


def check_schema(artifact: DatasetArtifact) -> CheckOutcome:
    """Every row has exactly the expected conversation columns, roles in order, string contents."""
    bad = 0
    expected_columns = set(ROLES[artifact.kind])
    for split in SPLITS:
        for row in artifact.read_split(split):
            ok = set(row) == expected_columns and all(
                isinstance(turns, list)
                and [t.get("role") for t in turns] == ROLES[artifact.kind][name]
                and all(isinstance(t.get("content"), str) for t in turns)
                for name, turns in _conversations(row, artifact.kind).items()
            )
            bad += not ok
    return CheckOutcome(
        bad == 0, f"{bad} rows do not match the {artifact.kind} schema", {"bad_rows": bad}
    )


def check_no_empty_fields(artifact: DatasetArtifact) -> CheckOutcome:
    empty = 0
    for split in SPLITS:
        for row in artifact.read_split(split):
            turns = [t for conv in _conversations(row, artifact.kind).values() for t in conv or []]
            empty += any(not str(t.get("content", "")).strip() for t in turns)
    return CheckOutcome(empty == 0, f"{empty} rows have an empty message", {"empty_rows": empty})


def row_text(row: dict[str, Any], kind: str) -> tuple[str, str]:
    """(instruction, author's text) of a row of either kind."""
    if kind == "instruction":
        return row["messages"][1]["content"], row["messages"][2]["content"]
    return row["prompt"][-1]["content"], row["chosen"][0]["content"]


def check_no_leakage(artifact: DatasetArtifact, n: int) -> CheckOutcome:
    """No train row shares an instruction or a word n-gram with the test split."""
    test = [row_text(r, artifact.kind) for r in artifact.read_split("test")]
    grams: set[tuple[str, ...]] = set()
    for instruction, answer in test:
        grams |= ngrams(f"{instruction}\n{answer}", n)
    instructions = {normalize(i) for i, _ in test}
    leaking = 0
    for row in artifact.read_split("train"):
        instruction, answer = row_text(row, artifact.kind)
        leaking += normalize(instruction) in instructions or not ngrams(
            f"{instruction}\n{answer}", n
        ).isdisjoint(grams)
    return CheckOutcome(
        leaking == 0,
        f"{leaking} train rows overlap the test split ({n}-grams)",
        {"leaking_rows": leaking},
    )


def check_min_samples(artifact: DatasetArtifact, minimum: int) -> CheckOutcome:
    total = sum(len(artifact.read_split(split)) for split in SPLITS)
    return CheckOutcome(
        total >= minimum, f"{total} rows (minimum {minimum})", {"rows": total, "minimum": minimum}
    )
