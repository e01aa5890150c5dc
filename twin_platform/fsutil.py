"""Writes that readers never see half done: a file replaced whole, a folder published by one rename."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write `data` to a temporary file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextmanager
def publishing(target: Path, replace: bool = False) -> Iterator[Path]:
    """A staging folder beside `target`; at the end of the block it becomes `target` in one rename.

    On an error the staging folder is removed and `target` is untouched. With `replace`, an
    existing `target` is swapped out (a reader may briefly find it missing, never half written);
    without it, a `target` that another writer published first wins and the staging is dropped.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield staging
        if replace and target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}-old-", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        elif not target.exists():
            try:
                os.replace(staging, target)
            except OSError:  # another writer published it meanwhile: theirs stands
                if not target.exists():
                    raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
