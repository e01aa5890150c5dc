"""Idempotent upserts on a natural key, with content hashes and honest counts."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

BOOKKEEPING_FIELDS = frozenset({"collected_at", "loaded_at", "updated_at"})


@dataclass(frozen=True)
class Counts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0


def row_hash(row: Mapping[str, Any]) -> str:
    """Hash of the row's content: sorted keys, bookkeeping fields left out."""
    content = {k: v for k, v in row.items() if k not in BOOKKEEPING_FIELDS}
    canonical = json.dumps(content, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def upsert_rows(
    conn: Any, table: str, rows: Iterable[Mapping[str, Any]], key: Sequence[str]
) -> Counts:
    """Insert new rows, update changed ones, skip unchanged ones. One bad row fails alone."""
    new = updated = unchanged = failed = 0
    key_sql = ", ".join(key)
    for row in rows:
        try:
            missing = [k for k in key if row.get(k) is None]
            if missing:
                raise ValueError(f"missing key fields {missing}")
            digest = row_hash(row)
            with conn.transaction():
                current = conn.execute(
                    f"select row_hash from {table} where ({key_sql}) = ({', '.join(['%s'] * len(key))})",
                    [row[k] for k in key],
                ).fetchone()
                if current is not None and current[0] == digest:
                    unchanged += 1
                    continue
                columns = [*row.keys(), "row_hash"]
                values = [*row.values(), digest]
                updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
                conn.execute(
                    f"insert into {table} ({', '.join(columns)}) values ({', '.join(['%s'] * len(columns))}) "
                    f"on conflict ({key_sql}) do update set {updates}",
                    values,
                )
                if current is None:
                    new += 1
                else:
                    updated += 1
        except (ValueError, TypeError) as exc:
            failed += 1
            log.error("row rejected: %s", exc)
    return Counts(new, updated, unchanged, failed)
