"""Importers of official data exports, the way to collect what crawlers cannot reach.

`import_export(path, author)` opens a zip or folder, recognises its kind by its layout and returns
the documents plus per-file failures. A new export kind is one module with an `IMPORTER` and one
line in `IMPORTERS`. An export that yields no document is a failure that says what it found and
skipped, never a silent success.
"""

from __future__ import annotations

from pathlib import Path

from twin_platform.collection.collected import Collected, Failure
from twin_platform.collection.importers import folder, linkedin, medium, reference, substack, x
from twin_platform.collection.importers.archive import ExportError, open_export
from twin_platform.collection.importers.base import Importer, ImportOptions

# Tried in this order when a source says `kind: auto`; a plain folder takes anything.
IMPORTERS: tuple[Importer, ...] = (
    x.IMPORTER,
    linkedin.IMPORTER,
    substack.IMPORTER,
    medium.IMPORTER,
    reference.IMPORTER,
    folder.IMPORTER,
)
EXPORT_KINDS = tuple(importer.kind for importer in IMPORTERS)
DEFAULT_MAX_BYTES = 500_000_000

__all__ = ["EXPORT_KINDS", "ExportError", "ImportOptions", "detect_kind", "import_export"]


def detect_kind(root: Path) -> str:
    """The export's kind, from files only that platform's export has."""
    return next(importer.kind for importer in IMPORTERS if importer.detect(root) is not None)


def import_export(
    path: Path,
    author: str,
    kind: str = "auto",
    options: ImportOptions = ImportOptions(),  # noqa: B008 - frozen
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Collected:
    """Every document in the export. Raises ExportError only when the export as a whole is unusable."""
    with open_export(path, max_bytes) as root:
        candidates = IMPORTERS if kind == "auto" else [i for i in IMPORTERS if i.kind == kind]
        if not candidates:
            raise ExportError(f"{path}: unknown export kind {kind!r}; one of {EXPORT_KINDS}")
        for importer in candidates:
            found = importer.detect(root)
            if found is not None:
                return _nothing_is_a_failure(
                    path, importer.kind, importer.read(found, author, options)
                )
        raise ExportError(f"{path}: not a {kind} export (its files are not where {kind} puts them)")


def _nothing_is_a_failure(path: Path, kind: str, result: Collected, listed: int = 10) -> Collected:
    """A source that yields nothing fails, naming what it skipped and why, so that a wrong folder
    or an unknown export format is never reported as `0 documents, 0 failed`."""
    if result.documents or result.failures:
        return result
    skipped = "; ".join(f"{Path(s.location).name} ({s.reason})" for s in result.skipped[:listed])
    more = f"; and {len(result.skipped) - listed} more" if len(result.skipped) > listed else ""
    reason = f"no documents found (read as a {kind} export)" + (
        f"; skipped {len(result.skipped)}: {skipped}{more}" if result.skipped else "; it is empty"
    )
    result.failures.append(Failure(str(path), reason))
    return result
