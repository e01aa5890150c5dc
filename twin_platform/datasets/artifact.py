"""A versioned dataset on disk: the contract between dataset generation and training.

A dataset is a folder named after its content hash, holding the train/test splits as JSONL (the chat
`messages` format TRL and the Hugging Face hub read) and parquet, plus its card (`card.json`,
`README.md`). It is written to a temporary folder and renamed into place, so a crash never leaves a
half-written version, and writing the same content twice is a no-op. `sources.jsonl` keeps each
row's provenance (split, sample id, source URL, category, origin) beside the rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl
import psycopg

from twin_platform.fsutil import publishing

DatasetKind = Literal["instruction", "preference"]
SPLITS = ("train", "test")
CARD_FILE = "card.json"

_MESSAGES = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))
PARQUET_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "instruction": {"messages": _MESSAGES},
    "preference": {"prompt": _MESSAGES, "chosen": _MESSAGES, "rejected": _MESSAGES},
}


@dataclass(frozen=True)
class DatasetArtifact:
    """One immutable dataset version. `path` is a local folder with the files listed above."""

    kind: DatasetKind
    author: str
    version: str
    path: Path

    def split_path(self, split: str, fmt: Literal["jsonl", "parquet"] = "jsonl") -> Path:
        return self.path / f"{split}.{fmt}"

    def read_split(self, split: str) -> list[dict[str, Any]]:
        with self.split_path(split).open(encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def card(self) -> dict[str, Any]:
        return json.loads((self.path / CARD_FILE).read_text(encoding="utf-8"))

    def to_dict(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "author": self.author,
            "version": self.version,
            "path": str(self.path),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetArtifact:
        return cls(
            kind=data["kind"],
            author=data["author"],
            version=data["version"],
            path=Path(data["path"]),
        )

    @classmethod
    def from_folder(cls, path: Path) -> DatasetArtifact:
        card = json.loads((path / CARD_FILE).read_text(encoding="utf-8"))
        return cls(kind=card["kind"], author=card["author"], version=card["version"], path=path)


def latest(root: Path, kind: DatasetKind, author: str) -> DatasetArtifact | None:
    """The newest complete version of an author's dataset under `root`, or None."""
    cards = sorted((root / kind / author).glob(f"*/{CARD_FILE}"), key=lambda p: p.stat().st_mtime)
    return DatasetArtifact.from_folder(cards[-1].parent) if cards else None


def to_jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in rows)


def content_version(splits: dict[str, list[dict[str, Any]]], recipe: dict[str, Any]) -> str:
    """Hash of the rows and of the recipe that made them (generator model, curation settings)."""
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode())
    for split in SPLITS:
        digest.update(split.encode())
        digest.update(to_jsonl(splits[split]).encode())
    return digest.hexdigest()[:16]


def write_artifact(
    root: Path,
    kind: DatasetKind,
    author: str,
    splits: dict[str, list[dict[str, Any]]],
    card: dict[str, Any],
    render_readme: Callable[[dict[str, Any]], str],
    recipe: dict[str, Any],
    extra_files: dict[str, str] | None = None,
) -> DatasetArtifact:
    """Write `root/<kind>/<author>/<version>/` atomically; an existing version is kept as is."""
    version = content_version(splits, recipe)
    target = root / kind / author / version
    artifact = DatasetArtifact(kind=kind, author=author, version=version, path=target)
    if (target / CARD_FILE).exists():
        return artifact
    with publishing(target) as staging:  # a version another writer published first is the same
        for split in SPLITS:
            rows = splits[split]
            (staging / f"{split}.jsonl").write_text(to_jsonl(rows), encoding="utf-8")
            pl.DataFrame(rows, schema=PARQUET_SCHEMAS[kind]).write_parquet(
                staging / f"{split}.parquet"
            )
        full_card = {"kind": kind, "author": author, "version": version, **card}
        (staging / CARD_FILE).write_text(
            json.dumps(full_card, indent=2, default=str), encoding="utf-8"
        )
        (staging / "README.md").write_text(render_readme(full_card), encoding="utf-8")
        for name, text in (extra_files or {}).items():
            (staging / name).write_text(text, encoding="utf-8")
    return artifact


def record_version(conn: psycopg.Connection, artifact: DatasetArtifact, generator: str) -> None:
    """The version and its counts in Postgres (`dataset_versions`), for the SQL models."""
    counts = artifact.card()["counts"]
    conn.execute(
        "INSERT INTO dataset_versions (kind, author, version, train_rows, test_rows, generator)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (
            artifact.kind,
            artifact.author,
            artifact.version,
            counts["train"],
            counts["test"],
            generator,
        ),
    )
