"""Importers of official data exports, the way to collect what crawlers cannot reach.

`import_export(path, author)` opens a zip or folder, detects its kind by its layout and returns the
documents plus per-file failures. Kinds: LinkedIn, Medium, Substack, X archive, plain folder.
"""

from __future__ import annotations

from pathlib import Path

from twin_platform.crawlers.base import Collected
from twin_platform.importers.archive import ExportError, find, open_export
from twin_platform.importers.folder import import_folder
from twin_platform.importers.linkedin import import_linkedin
from twin_platform.importers.medium import import_medium
from twin_platform.importers.substack import import_substack
from twin_platform.importers.x import import_x

EXPORT_KINDS = ("linkedin", "medium", "substack", "x", "folder")
DEFAULT_MAX_BYTES = 500_000_000

__all__ = ["EXPORT_KINDS", "ExportError", "detect_kind", "import_export"]


def detect_kind(root: Path) -> str:
    """The export's kind from files only that platform's export has."""
    if find(root, "tweets.js") or find(root, "tweet.js") or find(root, "tweets-part*.js"):
        return "x"
    if find(root, "Shares.csv") or find(root, "Articles/Articles", max_depth=3):
        return "linkedin"
    posts_csv = find(root, "posts.csv")
    if posts_csv is not None and (posts_csv.parent / "posts").is_dir():
        return "substack"
    posts_dir = find(root, "posts", max_depth=2)
    if (
        posts_dir is not None
        and posts_dir.is_dir()
        and any(
            'class="h-entry"' in p.read_text(errors="replace")[:5000]
            for p in list(posts_dir.glob("*.html"))[:5]
        )
    ):
        return "medium"
    return "folder"


def import_export(
    path: Path,
    author: str,
    kind: str = "auto",
    base_url: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Collected:
    """Every document in the export. Raises ExportError only when the export as a whole is unusable."""
    with open_export(path, max_bytes) as root:
        kind = detect_kind(root) if kind in ("auto", "export") else kind
        if kind == "x":
            tweets = find(root, "tweet*.js")
            assert tweets is not None
            return import_x(tweets.parent, author)
        if kind == "linkedin":
            return import_linkedin(root, author)
        if kind == "substack":
            posts_csv = find(root, "posts.csv")
            if posts_csv is None:
                raise ExportError(f"{path}: no posts.csv in this Substack export")
            return import_substack(posts_csv, author, base_url)
        if kind == "medium":
            posts_dir = find(root, "posts", max_depth=2)
            if posts_dir is None:
                raise ExportError(f"{path}: no posts/ folder in this Medium export")
            return import_medium(posts_dir, author)
        if kind == "folder":
            return import_folder(root, author)
        raise ExportError(f"{path}: unknown export kind {kind!r}; one of {EXPORT_KINDS}")
