"""An inbox folder per author: export files dropped into TWIN_HOME/inbox/<author>/ are sources.

Every entry of the folder (an export zip or folder, a Markdown or HTML file) is imported with the
author's configured sources on each collection; files stay, since imports are idempotent. An entry
still being written (a partial download, or modified in the last `settle_s` seconds) waits for the
next look, so a half-copied zip is never imported.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from twin_platform.collection.sources import AUTHOR_NAME, AuthorConfig, SourceSpec

PARTIAL_SUFFIXES = (".part", ".partial", ".crdownload", ".download", ".tmp")


def _settled(entry: Path, settle_s: float, now: float) -> bool:
    if entry.name.startswith(".") or entry.name.endswith(PARTIAL_SUFFIXES):
        return False
    files = [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
    return bool(files) and all(now - p.stat().st_mtime >= settle_s for p in files)


def inbox_entries(inbox_dir: Path, author: str, settle_s: float = 5.0) -> list[Path]:
    """The settled entries of an author's inbox, sorted by name."""
    folder = inbox_dir / author
    if not folder.is_dir():
        return []
    now = time.time()
    return sorted(e for e in folder.iterdir() if _settled(e, settle_s, now))


def inbox_authors(inbox_dir: Path) -> list[str]:
    """Folders of the inbox named like an author (others are ignored, and reported by the sensor)."""
    if not inbox_dir.is_dir():
        return []
    return sorted(p.name for p in inbox_dir.iterdir() if p.is_dir() and AUTHOR_NAME.match(p.name))


def fingerprint(entries: list[Path]) -> str:
    """Changes when an entry is added, removed, replaced or edited (names, sizes, mtimes)."""
    digest = hashlib.sha256()
    for entry in entries:
        files = [entry] if entry.is_file() else sorted(p for p in entry.rglob("*") if p.is_file())
        for path in files:
            stat = path.stat()
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def with_inbox(author: AuthorConfig | None, name: str, inbox_dir: Path) -> AuthorConfig | None:
    """The author's configured sources plus their inbox; an inbox alone makes an author."""
    entries = inbox_entries(inbox_dir, name)
    if author is None and not entries:
        return None
    base = author or AuthorConfig(name=name)
    sources = [*base.sources, *(SourceSpec(path=e) for e in entries)]
    return base.model_copy(update={"sources": sources})
