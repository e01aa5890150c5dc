"""The dataset card: what a dataset holds and how it was made, as JSON and as a Hugging Face README."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from twin_platform.datasets.curation import Sample
from twin_platform.reporting import histogram_markdown, markdown_table


def length_stats(values: list[int]) -> dict[str, float]:
    if not values:
        return {"min": 0, "mean": 0, "median": 0, "max": 0}
    return {
        "min": min(values),
        "mean": round(statistics.fmean(values), 1),
        "median": statistics.median(values),
        "max": max(values),
    }


def build_card(
    kind: str,
    author: str,
    splits: dict[str, list[Sample]],
    generator_model: str,
    curation: dict[str, Any],
    recipe: dict[str, Any],
) -> dict[str, Any]:
    """Counts, length stats (characters), sources, generator and the curation counts of a build."""
    rows = [s for split in splits.values() for s in split]
    fields = ["instruction", "answer"] + (["rejected"] if kind == "preference" else [])
    return {
        "counts": {name: len(split) for name, split in splits.items()},
        "lengths_chars": {
            f: length_stats([len(getattr(s, f) or "") for s in rows]) for f in fields
        },
        "sources": {
            "by_category": dict(Counter(s.category for s in rows)),
            "by_origin": dict(Counter(s.origin for s in rows)),
            "documents": len({s.source_url for s in rows}),
            "urls": sorted({s.source_url for s in rows})[:50],
        },
        "generator_model": generator_model,
        "curation": curation,
        "recipe": recipe,
    }


def build_readme(card: dict[str, Any]) -> str:
    """A Hugging Face dataset card: YAML front matter naming the splits, then the facts."""
    kind, counts = card["kind"], card["counts"]
    fmt = (
        "`messages`: system, user (instruction), assistant (the author's text)"
        if kind == "instruction"
        else "`prompt` (system, user), `chosen` (the author's text), `rejected` (a generated answer)"
    )
    lengths = "\n".join(
        f"| {field} | {s['min']} | {s['mean']} | {s['median']} | {s['max']} |"
        for field, s in card["lengths_chars"].items()
    )
    curation = "\n".join(f"| {step} | {value} |" for step, value in card["curation"].items())
    return f"""---
configs:
- config_name: default
  data_files:
  - split: train
    path: train.jsonl
  - split: test
    path: test.jsonl
tags: [llm-twin, {kind}]
---
# {kind.capitalize()} dataset of {card["author"]} (version {card["version"]})

Rows: {counts["train"]} train, {counts["test"]} test. Format (TRL conversational): {fmt}.
Generator model: `{card["generator_model"]}`. Source documents: {card["sources"]["documents"]}
({", ".join(f"{k}: {v}" for k, v in card["sources"]["by_category"].items())}).

## Lengths (characters)
| field | min | mean | median | max |
|---|---|---|---|---|
{lengths}

## Curation
| step | count |
|---|---|
{curation}
"""


def preview_markdown(samples: list[Sample], limit: int = 5) -> str:
    columns = ["instruction", "answer"] + (["rejected"] if any(s.rejected for s in samples) else [])
    rows = [{c: getattr(s, c) for c in columns} for s in samples]
    return markdown_table(rows, columns, limit=limit, width=90)


def length_plot_markdown(splits: dict[str, list[Sample]], kind: str) -> str:
    """Histograms of instruction, answer (and rejected) lengths, as a Markdown image."""
    rows = [s for split in splits.values() for s in split]
    series = {"author's text": [len(s.answer) for s in rows]}
    if kind == "preference":
        series["rejected (generated)"] = [len(s.rejected or "") for s in rows]
    series["instruction"] = [len(s.instruction) for s in rows]
    return histogram_markdown(series, "lengths", xlabel="characters", ylabel="rows", bins=20)
