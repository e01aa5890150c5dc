"""What the feature assets show in the UI: Markdown tables and an embedded token-length histogram."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import polars as pl


def markdown_table(frame: pl.DataFrame) -> str:
    if frame.is_empty():
        return "_(none)_"
    header = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * frame.width + "\n"
    return header + "\n".join(
        "| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.iter_rows()
    )


def _cell(value: Any, limit: int = 160) -> str:
    text = str(value).replace("\n", " ⏎ ").replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def samples_markdown(rows: Sequence[dict[str, Any]]) -> str:
    return markdown_table(pl.DataFrame(list(rows))) if rows else "_(no chunks)_"


def token_histogram_markdown(token_counts: Sequence[int], limit: int, title: str) -> str:
    """A histogram PNG (matplotlib, base64) as Markdown, with the model's limit drawn in."""
    if not token_counts:
        return "_(no chunks)_"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3), dpi=100)
    axes.hist(token_counts, bins=min(40, max(5, len(set(token_counts)))), color="#4c72b0")
    axes.axvline(limit, color="#c44e52", linestyle="--", label=f"model limit {limit}")
    axes.set_xlabel("tokens per chunk (special tokens included)")
    axes.set_ylabel("chunks")
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f"![{title}](data:image/png;base64,{encoded})"
