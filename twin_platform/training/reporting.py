"""Where a trainer's progress goes: Dagster (through Pipes) when Dagster launched it, else the log.

Under `accelerate launch` only the main process talks to Dagster; the others log locally.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from twin_platform.reporting import figure, image_markdown

logger = logging.getLogger("twin_platform.training")


class Reporter:
    """Plain logging; `PipesReporter` adds the Dagster side."""

    def __init__(self) -> None:
        self.extras: dict[str, Any] = {}

    def info(self, message: str) -> None:
        logger.info(message)

    def error(self, message: str) -> None:
        logger.error(message)

    def materialized(self, metadata: dict[str, Any], data_version: str) -> None:
        logger.info("materialized %s (data version %s)", metadata.get("model_path"), data_version)


class PipesReporter(Reporter):
    def __init__(self, context: Any) -> None:
        super().__init__()
        self.context = context
        self.extras = dict(context.extras)

    def info(self, message: str) -> None:
        logger.info(message)
        self.context.log.info(message)

    def error(self, message: str) -> None:
        logger.error(message)
        self.context.log.error(message)

    def materialized(self, metadata: dict[str, Any], data_version: str) -> None:
        self.context.report_asset_materialization(metadata=metadata, data_version=data_version)


def is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


@contextmanager
def open_reporter() -> Iterator[Reporter]:
    """Pipes when this process was launched by Dagster (and is the main one), plain logging otherwise."""
    from dagster_pipes import PipesContext, open_dagster_pipes

    if is_main_process() and not PipesContext.is_initialized() and _launched_by_dagster():
        with open_dagster_pipes() as context:
            yield PipesReporter(context)
    else:
        yield Reporter()


def _launched_by_dagster() -> bool:
    from dagster_pipes import DAGSTER_PIPES_CONTEXT_ENV_VAR, DAGSTER_PIPES_MESSAGES_ENV_VAR

    return bool(
        os.environ.get(DAGSTER_PIPES_CONTEXT_ENV_VAR)
        and os.environ.get(DAGSTER_PIPES_MESSAGES_ENV_VAR)
    )


def md(value: str) -> dict[str, Any]:
    return {"raw_value": value, "type": "md"}


def curves_markdown(log_history: list[dict[str, Any]]) -> str:
    """Training loss and learning rate against the step, as a Markdown image."""
    points = [e for e in log_history if "loss" in e and "step" in e]
    if not points:
        return "_no training steps were logged_"
    steps = [e["step"] for e in points]
    with figure("training curves", size=(9, 3.2), ncols=2) as (fig, (ax_loss, ax_lr)):
        ax_loss.plot(steps, [e["loss"] for e in points], marker="o", markersize=3)
        ax_loss.set(title="training loss", xlabel="step")
        ax_lr.plot(steps, [e.get("learning_rate", 0.0) for e in points], color="tab:orange")
        ax_lr.set(title="learning rate", xlabel="step")
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        return image_markdown(fig, "loss and learning rate")
