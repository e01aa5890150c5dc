"""Markdown for materialization metadata and reports: tables, and plots as inline PNG images.

Dagster renders Markdown metadata in the UI, and an image inlined as a data URI needs no file
server, so every asset, card and report builds its tables and plots here.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any


def cell(value: object, limit: int = 160) -> str:
    """One table cell: on one line, pipes escaped, cut at `limit` characters."""
    text = " ".join(str("" if value is None else value).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _format(value: object) -> object:
    return f"{value:.4g}" if isinstance(value, float) else value


def markdown_table(
    rows: Sequence[Mapping[str, Any]] | Any,
    columns: Sequence[str] | None = None,
    limit: int | None = None,
    width: int = 160,
    empty: str = "_(none)_",
) -> str:
    """A Markdown table of mappings (or a polars DataFrame); `columns` picks and orders them."""
    if hasattr(rows, "to_dicts"):
        rows = rows.to_dicts()
    if not rows:
        return empty
    columns = list(columns or rows[0].keys())
    shown = rows if limit is None else rows[:limit]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += [
        "| " + " | ".join(cell(_format(row.get(c)), width) for c in columns) + " |" for row in shown
    ]
    if limit is not None and len(rows) > limit:
        lines.append(f"| … {len(rows) - limit} more |" + " |" * (len(columns) - 1))
    return "\n".join(lines)


def key_value_table(
    values: Mapping[str, Any], headers: tuple[str, str] = ("metric", "value")
) -> str:
    return markdown_table([{headers[0]: k, headers[1]: v} for k, v in values.items()])


@contextmanager
def figure(title: str, size: tuple[float, float] = (7, 3), ncols: int = 1) -> Iterator[Any]:
    """A matplotlib figure whose axes the caller draws on; `image_markdown` turns it into Markdown.

    Yields (figure, axes) with axes a list when `ncols` > 1.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=size, dpi=80)
    fig.suptitle(title, fontsize=10)
    try:
        yield fig, axes
    finally:
        plt.close(fig)


def image_markdown(fig: Any, title: str) -> str:
    """The figure as a Markdown image with a base64 PNG data URI."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return f"![{title}](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})"


def histogram_markdown(
    series: Mapping[str, Sequence[float]],
    title: str,
    xlabel: str,
    ylabel: str = "count",
    marker: tuple[float, str] | None = None,
    bins: int = 30,
) -> str:
    """Overlaid histograms of one or more series; `marker` draws a labelled vertical line."""
    if not any(series.values()):
        return "_(no data)_"
    with figure(title) as (fig, axes):
        for label, values in series.items():
            axes.hist(values, bins=bins, alpha=0.7, label=label)
        if marker is not None:
            axes.axvline(marker[0], color="#c44e52", linestyle="--", label=marker[1])
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        axes.legend()
        return image_markdown(fig, title)


def bar_chart_markdown(
    labels: Sequence[str], values: Sequence[float], title: str, ylabel: str
) -> str:
    if not labels:
        return "_(no data)_"
    with figure(title) as (fig, axes):
        axes.bar(labels, values, color="#4c72b0")
        axes.set_ylabel(ylabel)
        axes.tick_params(axis="x", labelrotation=90, labelsize=7)
        return image_markdown(fig, title)
