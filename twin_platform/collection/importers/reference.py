"""The reference system's data-warehouse export (LLM-Engineers-Handbook `tools/data_warehouse.py`).

One JSON list per document class: `UserDocument.json`, `ArticleDocument.json`, `PostDocument.json`,
`RepositoryDocument.json`. Each document names its user (`author_id`, `author_full_name`), its
`platform` and `link`, and keeps its text in a `content` dict (`Title`/`Subtitle`/`Content` for
articles, `text` for LinkedIn posts, path -> file text for repositories). A user of that system
moves with `twin ingest --author SLUG EXPORT`, SLUG being their full name as a slug
(`Maxime Labonne` -> `maxime-labonne`): only that user's documents are imported, under their
original links, so importing again changes nothing.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twin_platform.collection.collected import Collected, Failure
from twin_platform.collection.importers.archive import ExportError, find, read_text
from twin_platform.collection.importers.base import Importer
from twin_platform.documents import Article, Post, RawDocument, Repository

FILES = ("ArticleDocument.json", "PostDocument.json", "RepositoryDocument.json")
USERS_FILE = "UserDocument.json"
TEXT_KEYS = ("Content", "content", "text", "Text", "body")
TITLE_KEYS = ("Title", "title", "name")
_DATE = re.compile(
    r"\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]{0,6}\.? \d{1,2}, \d{4}"
)


def slug(name: str) -> str:
    """`Maxime Labonne` -> `maxime-labonne`: the author key a user of the export moves under."""
    return re.sub(r"[^a-z0-9]+", "-", name.casefold()).strip("-")[:64]


def platform_name(platform: str, link: str) -> str:
    """The platform as this project names it; the site itself stays in `metadata.site`."""
    where = f"{platform} {link}".lower()
    for name, marker in (
        ("substack", "substack"),
        ("medium", "medium"),
        ("linkedin", "linkedin"),
        ("x", "twitter.com"),
        ("x", "x.com"),
        ("github", "github.com"),
    ):
        if marker in where:
            return name
    return "web"


def _title(text: str, page_title: str | None, author: str) -> str | None:
    """The page's own `# ` heading holding most words of the page title (page titles are often
    shortened for search engines; html2text wraps headings; the site's name is not it), else the
    page title without the author's name (`T - Maxime Labonne`, `T - by Paul`, `Maxime - T`)."""
    named = set(re.findall(r"\w+", (page_title or "").casefold())) - set(
        re.findall(r"\w+", f"{author} by".casefold())
    )
    lines = text[:8000].split("\n")
    for index, line in enumerate(lines):
        if not line.startswith("# "):
            continue
        heading = line[2:].strip()
        for following in (x.strip() for x in lines[index + 1 : index + 4]):
            if not following or re.match(r"[#>*|`]|[-+] |\d+[.)] ", following):
                break
            glue = "" if re.search(r"[A-Za-z]-$", heading) else " "
            heading = f"{heading}{glue}{following}"
        words = set(re.findall(r"\w+", heading.casefold()))
        if heading.casefold() == author.strip().casefold() or not words:
            continue
        if len(named & words) >= 0.5 * len(named):
            return heading
    if not page_title or not page_title.strip():
        return None
    name = re.escape(author.strip())
    title = re.sub(r"\s+[-|–—]\s+by\s+.*$", "", page_title.strip(), flags=re.I)
    title = re.sub(rf"\s+[-|–—]\s+{name}\s*$", "", title, flags=re.I)
    title = re.sub(rf"^{name}\s+[-|–—]\s+", "", title, flags=re.I)
    return title.strip() or None


def _text_of(content: Any) -> str:
    """The document's text: the first text key, else every string value but links and images."""
    if isinstance(content, str):
        return content
    if not isinstance(content, dict):
        return ""
    for key in TEXT_KEYS:
        if isinstance(content.get(key), str) and content[key].strip():
            return content[key]
    return "\n\n".join(
        value
        for key, value in content.items()
        if isinstance(value, str) and key.lower() not in ("image", "link", "url", "language")
    )


def _byline_date(text: str) -> datetime | None:
    """The export has no dates; scraped pages show one in their byline (`Jun 12, 2024`)."""
    match = _DATE.search(text[:5000])
    if match is None:
        return None
    value = match.group(0).replace(".", "")
    for layout in ("%b %d, %Y", "%B %d, %Y"):
        try:
            return datetime.strptime(value, layout).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def _metadata(row: dict[str, Any]) -> dict[str, Any]:
    content = row["content"] if isinstance(row.get("content"), dict) else {}
    extras = {
        "site": row.get("platform"),
        "reference_id": row.get("_id"),
        "reference_author": row.get("author_full_name"),
        "subtitle": content.get("Subtitle"),
        "language": content.get("language"),
        "image": content.get("image") or row.get("image"),
    }
    return {key: value for key, value in extras.items() if value}


def _article(row: dict[str, Any], author: str) -> Article | Failure:
    content = row.get("content")
    text = _text_of(content).strip()
    link = row.get("link")
    if not isinstance(link, str) or not link.strip():
        return Failure(f"article {row.get('_id')}", "no link")
    if not text:
        keys = sorted(content) if isinstance(content, dict) else type(content).__name__
        return Failure(link, f"no text in its content (keys: {keys})")
    title = next(
        (content[k] for k in TITLE_KEYS if isinstance(content, dict) and content.get(k)), None
    )
    return Article(
        author=author,
        platform=platform_name(str(row.get("platform", "")), link),
        url=link.strip(),
        title=_title(text, title, str(row.get("author_full_name", ""))),
        content=text,
        published_at=_byline_date(text),
        metadata=_metadata(row),
    )


def _post(row: dict[str, Any], author: str) -> Post | Failure:
    text = _text_of(row.get("content")).strip()
    # LinkedIn posts of the reference have no link: their stable id names them.
    link = row.get("link") or f"urn:llm-engineers-handbook:post:{row.get('_id')}"
    if not text:
        return Failure(str(link), "no text in its content")
    return Post(
        author=author,
        platform=platform_name(str(row.get("platform", "")), str(row.get("link") or "")),
        url=str(link),
        content=text,
        metadata=_metadata(row),
    )


def _repository(row: dict[str, Any], author: str) -> Repository | Failure:
    """Files as one Markdown document, as the GitHub crawler builds it, minus what it skips."""
    from twin_platform.collection.crawlers.github import LANGUAGES, skip_reason  # HTTP stack: lazy

    link, tree = row.get("link"), row.get("content")
    if not isinstance(link, str) or not isinstance(tree, dict):
        return Failure(str(link or row.get("_id")), "no link or no file tree")
    name = str(row.get("name") or link.rstrip("/").rsplit("/", 1)[-1])
    kept: list[str] = []
    skipped: Counter[str] = Counter()
    for path, text in sorted(tree.items()):
        if not isinstance(text, str):
            skipped["not text"] += 1
            continue
        reason = skip_reason(Path(path), text.encode("utf-8", "replace")[:8192])
        if reason is not None:
            skipped[reason] += 1
            continue
        fence = "````" if "```" in text else "```"
        language = LANGUAGES.get(Path(path).suffix.lower(), "")
        kept.append(f"## {path}\n\n{fence}{language}\n{text.rstrip()}\n{fence}")
    if not kept:
        return Failure(link, f"no text files to keep (skipped: {dict(skipped) or 'none'})")
    return Repository(
        author=author,
        platform=platform_name(str(row.get("platform", "")), link),
        url=link,
        title=name,
        content="\n\n".join([f"# {name}", *kept]) + "\n",
        metadata=_metadata(row) | {"skipped": dict(skipped), "files": len(kept)},
    )


PARSERS: dict[str, Callable[[dict[str, Any], str], RawDocument | Failure]] = {
    "ArticleDocument.json": _article,
    "PostDocument.json": _post,
    "RepositoryDocument.json": _repository,
}


def _load(path: Path) -> list[Any]:
    try:
        rows = json.loads(read_text(path)[0])
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path.name}: not JSON ({exc})") from exc
    if not isinstance(rows, list):
        raise ExportError(f"{path.name}: expected a JSON list of documents")
    return rows


def users(root: Path) -> Counter[str]:
    """Documents per user full name in the export at `root`; users without documents count 0."""
    rows = [row for name in FILES if (root / name).is_file() for row in _load(root / name)]
    found: Counter[str] = Counter(
        str(row.get("author_full_name") or "") for row in rows if isinstance(row, dict)
    )
    if (root / USERS_FILE).is_file():
        for user in _load(root / USERS_FILE):
            if isinstance(user, dict):
                full = f"{user.get('first_name', '')} {user.get('last_name', '')}".strip()
                found[full] += 0
    found.pop("", None)
    return found


def import_reference(root: Path, author: str) -> Collected:
    """The documents of the one user whose name, as a slug, is `author`."""
    result = Collected()
    found = users(root)
    if author not in {slug(name) for name in found}:
        listed = ", ".join(f"{slug(n)} ({n}, {count} documents)" for n, count in found.items())
        raise ExportError(
            f"no user of this LLM-Engineers-Handbook export matches --author {author!r}; its users: "
            f"{listed or 'none'}. Ingest it with `twin ingest --author SLUG EXPORT`, SLUG one of them."
        )
    for name in (name for name in FILES if (root / name).is_file()):
        for index, row in enumerate(_load(root / name)):
            if not isinstance(row, dict):
                result.failures.append(Failure(f"{name}[{index}]", "not a JSON object"))
            elif slug(str(row.get("author_full_name") or "")) != author:
                continue  # another user's document
            else:
                result.add(f"{name}[{index}]", PARSERS[name], row, author)
    return result


def detect(root: Path) -> Path | None:
    """The folder holding the export's JSON files (`data/data_warehouse_raw_data` in the reference)."""
    found = [p for name in (*FILES, USERS_FILE) if (p := find(root, name)) is not None]
    return min((p.parent for p in found), key=lambda p: (len(p.parts), str(p))) if found else None


IMPORTER = Importer(
    "reference", detect, lambda root, author, options: import_reference(root, author)
)
