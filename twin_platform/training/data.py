"""Training data from a dataset folder (train.jsonl / test.jsonl), in the formats TRL reads.

Instruction rows are `{"messages": [system, user, assistant]}`, built with `prompts.chat_messages`;
they become TRL's conversational prompt-completion rows so the loss falls on the answer only, and
TRL renders them with the tokenizer's own chat template, the one the API serves with. Preference rows
are already in TRL's conversational preference format: `{"prompt", "chosen", "rejected"}`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from twin_platform.training.config import Stage

KIND = {"sft": "instruction", "dpo": "preference"}


class DatasetError(ValueError):
    """A missing, empty or malformed training dataset."""


def read_rows(dataset_dir: Path, stage: Stage, split: str = "train") -> list[dict[str, Any]]:
    """Validated rows of one split, with a message that says which asset to materialize when missing."""
    kind = KIND[stage]
    path = Path(dataset_dir) / f"{split}.jsonl"
    if not path.is_file():
        raise DatasetError(
            f"no {kind} dataset at {path}: materialize `{kind}_dataset` for this author first "
            f"(or pass a folder holding {split}.jsonl)"
        )
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{number} is not valid JSON ({exc.msg})") from exc
            rows.append(_check(row, stage, f"{path}:{number}"))
    if not rows:
        raise DatasetError(
            f"the {kind} dataset {path} is empty: there is nothing to train on. Collect more documents "
            f"for this author or relax the dataset's curation thresholds, then materialize `{kind}_dataset`."
        )
    return rows


def _check(row: dict[str, Any], stage: Stage, where: str) -> dict[str, Any]:
    if stage == "sft":
        messages = row.get("messages")
        if (
            not isinstance(messages, list)
            or len(messages) < 2
            or messages[-1].get("role") != "assistant"
        ):
            raise DatasetError(
                f"{where}: an instruction row needs `messages` ending with an assistant turn"
            )
        return {"prompt": messages[:-1], "completion": messages[-1:]}
    for key in ("prompt", "chosen", "rejected"):
        if not isinstance(row.get(key), list) or not row[key]:
            raise DatasetError(f"{where}: a preference row needs non-empty `{key}` message lists")
    return {"prompt": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"]}


def load_dataset(dataset_dir: Path, stage: Stage, max_samples: int | None = None):  # type: ignore[no-untyped-def]
    """The train split as a `datasets.Dataset`, cut to `max_samples` rows when given."""
    from datasets import Dataset

    rows = read_rows(dataset_dir, stage)
    return Dataset.from_list(rows[:max_samples] if max_samples else rows)


def dataset_version(dataset_dir: Path) -> str:
    """The dataset's own version (card.json), else a hash of its train split."""
    card = Path(dataset_dir) / "card.json"
    if card.is_file():
        version = json.loads(card.read_text(encoding="utf-8")).get("version")
        if version:
            return str(version)
    train = Path(dataset_dir) / "train.jsonl"
    return hashlib.sha256(train.read_bytes()).hexdigest()[:16] if train.is_file() else "missing"
