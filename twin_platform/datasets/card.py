"""The dataset card: what a dataset holds and how it was made, as JSON and as a Hugging Face README."""

from __future__ import annotations

import base64
import io
import statistics
from collections import Counter
from typing import Any

from twin_platform.datasets.curation import Sample


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


def preview_markdown(samples: list[Sample], limit: int = 5, width: int = 90) -> str:
    def cell(text: str | None) -> str:
        text = " ".join((text or "").split()).replace("|", "\\|")
        return text if len(text) <= width else text[: width - 1] + "…"

    has_rejected = any(s.rejected for s in samples)
    header = "| instruction | answer |" + (" rejected |" if has_rejected else "")
    rule = "|---|---|" + ("---|" if has_rejected else "")
    lines = [
        f"| {cell(s.instruction)} | {cell(s.answer)} |"
        + (f" {cell(s.rejected)} |" if has_rejected else "")
        for s in samples[:limit]
    ]
    return "\n".join([header, rule, *lines])


def length_plot_markdown(splits: dict[str, list[Sample]], kind: str) -> str:
    """Histograms of answer (and rejected) lengths as Markdown with an inline PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [s for split in splits.values() for s in split]
    fig, ax = plt.subplots(figsize=(6, 3), dpi=80)
    ax.hist([len(s.answer) for s in rows], bins=20, alpha=0.7, label="author's text")
    if kind == "preference":
        ax.hist(
            [len(s.rejected or "") for s in rows], bins=20, alpha=0.7, label="rejected (generated)"
        )
    ax.hist([len(s.instruction) for s in rows], bins=20, alpha=0.7, label="instruction")
    ax.set_xlabel("characters")
    ax.set_ylabel("rows")
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return f"![lengths](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})"
