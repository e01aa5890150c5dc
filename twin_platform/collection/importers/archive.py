"""Opening an export: a folder as it is, a zip unpacked safely into a temporary folder."""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath


class ExportError(ValueError):
    """The export as a whole cannot be read (not a zip, too large, unknown layout)."""


@contextmanager
def open_export(path: Path, max_bytes: int) -> Iterator[Path]:
    """The export's root folder. Zips are checked for path traversal and size before unpacking."""
    path = path.expanduser()
    if path.is_dir():
        yield path
        return
    if not path.is_file():
        raise ExportError(f"{path}: no such file or folder")
    if not zipfile.is_zipfile(path):
        raise ExportError(
            f"{path}: not a zip file or folder (exports are zips or unpacked folders)"
        )
    tmp = Path(tempfile.mkdtemp(prefix="twin-export-"))
    try:
        try:
            with zipfile.ZipFile(path) as archive:
                members = archive.infolist()
                total = sum(m.file_size for m in members)
                if total > max_bytes:
                    raise ExportError(
                        f"{path}: unpacks to {total:,} bytes, over the {max_bytes:,}-byte limit"
                    )
                for member in members:
                    name = PurePosixPath(member.filename)
                    if name.is_absolute() or ".." in name.parts:
                        raise ExportError(f"{path}: unsafe path in zip: {member.filename!r}")
                archive.extractall(tmp)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ExportError(f"{path}: broken zip file ({exc})") from exc
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def find(root: Path, pattern: str, max_depth: int = 3) -> Path | None:
    """The shallowest file or folder matching `pattern` (exports often wrap everything in a folder)."""
    matches = [p for p in root.rglob(pattern) if len(p.relative_to(root).parts) <= max_depth]
    matches = [
        p
        for p in matches
        if not any(part.startswith((".", "__MACOSX")) for part in p.relative_to(root).parts)
    ]
    return min(matches, key=lambda p: (len(p.parts), str(p))) if matches else None


def read_text(path: Path) -> tuple[str, int]:
    """File text, with invalid UTF-8 replaced; the second value counts replaced characters."""
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8"), 0
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        return text, text.count("\ufffd")
