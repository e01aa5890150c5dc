"""A real corpus: the reference system's warehouse export, migrated and cleaned down to the author.

Every user of the export is ingested as `twin ingest --author SLUG EXPORT` does it (importer +
warehouse upsert), then cleaned and chunked by the feature pipeline (`sync_cleaned_documents`,
`sync_chunks`), in a throwaway TWIN_HOME with its own embedded servers. Measured per user:
- time of the import and of the feature pipeline without embedding (the tokenizer loaded first);
- chrome lines: lines that are pure platform chrome ("Copy link", "Facebook", "SubscribeSign in",
  "Share this post", bare "Note"/"Other", ...), in the raw pages and after cleaning;
- paragraphs of the author lost: blocks of 12 words or more in the raw page (sentences of glued
  Medium text), not known widgets, whose words are missing from the cleaned document; a paragraph
  that several documents repeat counts as lost only when no cleaned document keeps it;
- title retrieval: hit@5 of each document's title as a query, against the raw pages (stored and
  chunked as they are, under a shadow author) and against the pipeline's cleaned chunks, both
  embedded by the pipeline: by exact cosine, and through the API's retrieval (`twin search`:
  vector + full text fused by rank, reranked);
- `--compare`: the same chrome and loss figures (and time) for the alternatives, in memory: the
  previous cleaner (git HEAD's cleaning.py) and trafilatura's extraction with its deduplication
  (the page's Markdown rendered to HTML first, since the export keeps no HTML).

    .venv/bin/python benchmarks/bench_real_corpus.py --export PATH/data_warehouse_raw_data --compare
    .venv/bin/python benchmarks/bench_real_corpus.py --generate 1   # dry run on generated pages
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# Lines that are a platform's chrome and nothing else, as html2text or get_text() left them.
PURE_CHROME = {
    "copy link",
    "facebook",
    "subscribesign in",
    "subscribe sign in",
    "share this post",
    "note",
    "other",
    "email",
    "share",
    "comments",
    "restacks",
    "top",
    "latest",
    "discussions",
    "no posts",
    "ready for more?",
    "subscribe",
    "previousnext",
    "start writingget the app",
    "substack is the home for great culture",
    "privacy ∙ terms ∙ collection notice",
    "discussion about this post",
    "unblock scripts",
    "image by author",
    "listen",
    "follow",
    "open in app",
    "sign in",
    "sign up",
}
MEDIUM_CHROME = ("Open in app", "ListenShare", "·Follow", "Sign up to discover human stories")
MIN_WORDS = 12


def words(text: str) -> str:
    """Comparable words: what survives re-flowing, Markdown and NFKC (𝐖 is W, wᵢ is wi)."""
    return " ".join(re.findall(r"[^\W_]+", unicodedata.normalize("NFKC", text).casefold()))


def chrome_lines(text: str) -> int:
    from twin_platform.features.boilerplate import line_key

    pure = sum(line_key(line) in PURE_CHROME for line in text.split("\n"))
    return pure + sum(text.count(marker) for marker in MEDIUM_CHROME)


def paragraphs(raw: str) -> list[str]:
    """The author's candidate paragraphs of a raw page: prose blocks, or the sentences of glued
    Medium text between its header (up to "ListenShare") and its footer (from "Sign up to
    discover human stories"); code, lists, headings and known widgets left out."""
    from twin_platform.features.boilerplate import is_widget_line, mark_code

    prose = "\n".join(line for line, code in mark_code(raw.split("\n")) if not code)
    blocks: list[str] = []
    for block in re.split(r"\n\s*\n", prose):
        one_line = "\n" not in block.strip()
        if one_line and (len(block) > 2000 or any(m in block for m in MEDIUM_CHROME)):
            body = block.split("ListenShare", 1)[-1].split("Sign up to discover human stories")[0]
            blocks += re.split(r"(?<=[a-z0-9)][.!?])(?=[A-Z])|(?<=[.!?]) (?=[A-Z])", body)
        elif not re.match(r"\s*([#>|]|[-*+] |\d+[.)] )", block):
            blocks.append(" ".join(block.split()))
    return [b for b in blocks if len(words(b).split()) >= MIN_WORDS and not is_widget_line(b)]


def losses(raws: dict[str, str], cleaned: dict[str, str]) -> tuple[int, int, list[str]]:
    """(paragraphs, lost, samples of the lost) over one user's documents."""
    found = {url: paragraphs(text) for url, text in raws.items()}
    seen = Counter(words(p) for ps in found.values() for p in set(ps))
    everything = " \n ".join(words(text) for text in cleaned.values())
    total, lost, samples = 0, 0, []
    for url, ps in found.items():
        mine = words(cleaned.get(url, ""))
        for paragraph in ps:
            key = words(paragraph)
            total += 1
            kept = key in mine or (seen[key] > 1 and key in everything)
            if not kept:
                lost += 1
                samples.append(f"{url}: {paragraph[:160]}")
    return total, lost, samples


def index_raw(
    conn: object, author: str, raws: dict[str, str], titles: dict[str, str], chunker: object
) -> str:
    """The raw pages, uncleaned, stored and chunked under a shadow author: the "before" side."""
    from twin_platform.documents import content_hash
    from twin_platform.features import pipeline
    from twin_platform.storage.feature_store import writes
    from twin_platform.storage.feature_store.records import CleanedDocument

    shadow = f"{author}--raw"
    rows = [
        CleanedDocument(
            pipeline.document_id("articles", shadow, url),
            *(shadow, "articles", "raw", url, titles.get(url), text, content_hash(text)),
            *(None, None, "ok", "raw"),
        )
        for url, text in raws.items()
    ]
    writes.upsert_cleaned(conn, rows)  # type: ignore[arg-type]
    pipeline.sync_chunks(conn, shadow, chunker)  # type: ignore[arg-type]
    return shadow


def vector_hits(conn: object, author: str, titles: dict[str, str], embedder: object) -> float:
    """Share of titles whose document is among the top 5 chunks by exact cosine (no index)."""
    rows = conn.execute(  # type: ignore[attr-defined]
        "SELECT source_url, embedding FROM embedded_chunks WHERE author = %s", (author,)
    ).fetchall()
    owners = np.array([url for url, _ in rows])
    vectors = np.stack([np.asarray(vector.to_numpy(), dtype=np.float32) for _, vector in rows])
    urls = list(titles)
    queries = embedder.encode([titles[u] for u in urls])  # type: ignore[attr-defined]
    top = np.argsort(-(queries @ vectors.T), axis=1)[:, :5]
    return float(np.mean([urls[i] in set(owners[top[i]]) for i in range(len(urls))]))


def search_hits(
    retrieve: Callable[[str, str], list[str]], author: str, titles: dict[str, str]
) -> float:
    """Share of titles whose document is among the 5 chunks `twin search` returns."""
    return float(np.mean([url in retrieve(title, author) for url, title in titles.items()]))


def setup(home: Path | None) -> bool:
    """Point TWIN_HOME at `home` or a new temporary one; whether the servers are ours to stop."""
    os.environ["TWIN_HOME"] = str(home or Path(tempfile.mkdtemp(prefix="bench-real-")))
    os.environ["TWIN_MONGO_PORT"] = os.environ.get("TWIN_MONGO_PORT", "27125")
    # The API encodes queries on ONNX Runtime after a one-off export; torch gives the same vectors
    # (checked at export) without paying that export in a fresh TWIN_HOME.
    os.environ.setdefault("TWIN_QUERY_ENCODER", "torch")
    return home is None


def previous_cleaner(rev: str) -> Callable[[str, str], str] | None:
    """`clean` of cleaning.py at git revision `rev` (the cleaner before this one), or None."""
    try:
        source = subprocess.run(
            ["git", "show", f"{rev}:twin_platform/features/cleaning.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "previous_cleaning.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("previous_cleaning", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["previous_cleaning"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return lambda url, text: module.clean(text, "articles").content


def trafilatura_cleaner() -> Callable[[str, str], str]:
    """trafilatura on the page rendered to HTML, with its cross-document deduplication on."""
    import markdown
    import trafilatura

    def clean(url: str, text: str) -> str:
        html = f"<html><body><article>{markdown.markdown(text)}</article></body></html>"
        return (
            trafilatura.extract(html, output_format="markdown", deduplicate=True, favor_recall=True)
            or ""
        )

    return clean


# Secret detection inputs: (line, what must disappear or None for a line to leave untouched). The
# credentials are fakes in their providers' real formats.
SECRET_LINES: list[tuple[str, str | None]] = [
    ('OPENAI_KEY = "sk-proj-Xy7Qp2Lm9Rt4Vw8Zb3NcT3BlbkFJHd5Kf1Gs6Jq0Pa2Ue4Wi"', "T3BlbkFJ"),
    ("export OPENAI_API_KEY=sk-proj-Xy7Qp2Lm9Rt4Vw8Zb3NcT3BlbkFJHd5Kf1Gs6Jq0Pa2Ue4Wi", "T3BlbkFJ"),
    ('AWS_ACCESS_KEY_ID = "AKIAQ3EGUKK4VTZ7X2MB"', "AKIAQ3EGUKK4VTZ7X2MB"),
    ("token: ghp_Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0LzXcVb", "ghp_Zx9Q"),
    ('SLACK = "xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"', "xoxb-"),
    ("stripe sk_live_51HqLyjWDarjtT1zdp7dcXy7Qp2Lm9Rt4", "sk_live_"),
    ("DATABASE_URL=postgres://admin:S3cr3tPassw0rd@db.internal:5432/app", "S3cr3tPassw0rd"),
    (
        "auth eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0",
        "eyJ",
    ),
    ("-----BEGIN RSA PRIVATE KEY-----", "PRIVATE KEY"),
    ('password = "hunter2hunter2"', "hunter2"),
    ("Use sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789 in the client.", "sk-ant-"),
    (
        "curl -H 'Authorization: Bearer 7fG2kLp9Qx4ZbN8vR1sT6wYc' https://api.example.com",
        "7fG2kLp9",
    ),
    ("HF_TOKEN=hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567", "hf_AbCd"),
    ("self.password = password or os.getenv('PROXY_PASSWORD')", None),
    ("api = HfApi(token=userdata.get('HF_TOKEN'))", None),
    ("model.push_to_hub(new_model, use_temp_dir=False, token=hf_token)", None),
    ('model_id = "mlabonne/NeuralDaredevil-8B-abliterated"', None),
    ("The p99 was 140 ms for 50,000 rows on version 3.12.1 at 10.0.0.2, commit 3f2a9c1.", None),
    ("tokenizer = AutoTokenizer.from_pretrained(base_model, token=True)", None),
]


def secrets_table() -> list[str]:
    """detect-secrets alone, the patterns alone and both (the scrubber) on SECRET_LINES."""
    from detect_secrets.settings import default_settings

    from twin_platform.features import pii

    def detected(line: str) -> bool:
        with default_settings():
            return bool(pii._detect(line))

    def patterned(line: str) -> bool:
        return any(pattern.search(line) for _, pattern in pii.PATTERNS)

    def scrubbed(line: str) -> bool:
        return pii.scrub_pii(line)[0] != line

    rows = ["| detector | secrets found | false alarms | ms per line |", "|---|---|---|---|"]
    positives = sum(secret is not None for _, secret in SECRET_LINES)
    for name, found in (
        ("detect-secrets 1.5 alone", detected),
        ("patterns alone", patterned),
        ("both (`scrub_pii`)", scrubbed),
    ):
        started = time.perf_counter()
        hits = [(found(line), secret is not None) for line, secret in SECRET_LINES]
        ms = (time.perf_counter() - started) * 1000 / len(SECRET_LINES)
        found_ = sum(hit and real for hit, real in hits)
        alarms = sum(hit and not real for hit, real in hits)
        rows.append(
            f"| {name} | {found_} of {positives} | {alarms} of "
            f"{len(SECRET_LINES) - positives} | {ms:.1f} |"
        )
    return rows


@dataclass
class Score:
    chrome: int = 0
    lost: int = 0
    paragraphs: int = 0
    seconds: float = 0.0

    def add(self, raws: dict[str, str], cleaner: Callable[[str, str], str]) -> None:
        started = time.perf_counter()
        cleaned = {url: cleaner(url, text) for url, text in raws.items()}
        self.seconds += time.perf_counter() - started
        total, lost, _ = losses(raws, cleaned)
        self.chrome += sum(chrome_lines(text) for text in cleaned.values())
        self.lost, self.paragraphs = self.lost + lost, self.paragraphs + total


def this_cleaner(raws: dict[str, str], titles: dict[str, str]) -> Callable[[str, str], str]:
    """This cleaner in memory, as the pipeline runs it on one (user, platform) group."""
    from twin_platform.features.cleaning import DocumentContext, clean, corpus_profile

    profile = corpus_profile(raws.items())

    def run(url: str, text: str) -> str:
        context = DocumentContext(title=titles.get(url), profile=profile, document=url)
        return clean(text, "articles", context=context).content

    return run


def run_user(
    author: str,
    export: Path,
    db: object,
    url: str,
    chunker: object,
    embedder: object | None,
    retrieve: Callable[[str, str], list[str]] | None,
) -> tuple[str, list[str], list[str]]:
    """One user through import, cleaning and chunking: the table row, the chrome measured per
    platform, and the paragraphs lost."""
    from twin_platform.collection.ingest import ingest_author
    from twin_platform.collection.sources import AuthorConfig, SourceSpec
    from twin_platform.features import pipeline
    from twin_platform.settings import load_settings
    from twin_platform.storage.postgres import connect

    source = SourceSpec(path=export)
    started = time.perf_counter()
    report = ingest_author(AuthorConfig(name=author, sources=[source]), db, load_settings())  # type: ignore[arg-type]
    import_s = time.perf_counter() - started
    with connect(url) as conn:
        started = time.perf_counter()
        cleaning = pipeline.sync_cleaned_documents(db, conn, author)  # type: ignore[arg-type]
        chunking = pipeline.sync_chunks(conn, author, chunker)  # type: ignore[arg-type]
        features_s = time.perf_counter() - started
        cleaned = dict(
            conn.execute(
                "SELECT url, content FROM cleaned_documents WHERE author = %s", (author,)
            ).fetchall()
        )
        chunks = conn.execute(
            "SELECT source_url, content FROM chunks WHERE author = %s", (author,)
        ).fetchall()
    raws = {
        d["url"]: d["content"]
        for category in ("articles", "posts")
        for d in db[category].find({"author": author}, {"url": 1, "content": 1, "title": 1})  # type: ignore[index]
    }
    titles = {
        d["url"]: d["title"]
        for d in db["articles"].find({"author": author}, {"url": 1, "title": 1})  # type: ignore[index]
        if d.get("title")
    }
    total, lost, samples = losses(raws, cleaned)
    row = [
        author,
        str(sum(c.new for c in report.counts.values())),
        str(report.total_failed),
        f"{import_s:.1f}",
        f"{features_s:.1f} (clean {cleaning.seconds:.1f}, chunk {chunking.seconds:.1f})",
        str(len(chunks)),
        f"{sum(chrome_lines(t) for t in raws.values())} -> "
        f"{sum(chrome_lines(t) for t in cleaned.values())}",
        f"{lost} of {total}",
    ]
    if retrieve is not None:
        with connect(url) as conn:
            shadow = index_raw(conn, author, raws, titles, chunker)
            for who in (shadow, author):
                pipeline.sync_embeddings(conn, who, embedder)  # type: ignore[arg-type]
            row.append(
                f"{vector_hits(conn, shadow, titles, embedder):.3f} -> "
                f"{vector_hits(conn, author, titles, embedder):.3f}"
            )
        row.append(
            f"{search_hits(retrieve, shadow, titles):.3f} -> "
            f"{search_hits(retrieve, author, titles):.3f}"
        )
    boilerplate = [
        f"- {author} / {p}: {s['documents']} documents, threshold {s['threshold']}, "
        f"{s['chrome_lines']} chrome lines ({s['kept_once']} prose lines kept once)"
        for p, s in cleaning.boilerplate.items()
    ]
    return f"| {' | '.join(row)} |", boilerplate, samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--export", type=Path, help="the export folder or zip")
    parser.add_argument(
        "--generate", type=int, default=0, help="dry run: a generated export, COPIES x 12 pages"
    )
    parser.add_argument("--authors", nargs="*", help="users (slugs); default: every user")
    parser.add_argument("--no-retrieval", action="store_true", help="skip hit@5 (embeds chunks)")
    parser.add_argument("--compare", action="store_true", help="also the alternative cleaners")
    parser.add_argument("--baseline-rev", default="HEAD", help="git revision of the old cleaner")
    parser.add_argument("--home", type=Path, help="TWIN_HOME (default: a new temporary one)")
    parser.add_argument("--out", type=Path, help="also write the report here")
    parser.add_argument("--lost", type=Path, help="write every lost paragraph here, to read them")
    args = parser.parse_args()
    own_servers = setup(args.home)
    sys.path.insert(0, str(ROOT / "tests"))

    from twin_platform import servers
    from twin_platform.collection.importers.archive import open_export
    from twin_platform.collection.importers.reference import detect, slug, users
    from twin_platform.features import pipeline
    from twin_platform.features.embedding import DEFAULT_MODEL, load_embedder
    from twin_platform.settings import load_settings
    from twin_platform.storage import warehouse

    export = args.export
    if args.generate:
        from fixtures.scraped.pages import write_export

        export = write_export(Path(tempfile.mkdtemp()) / "export", copies=args.generate).folder
    if export is None:
        parser.error("give --export PATH or --generate COPIES")
    with open_export(export, 500_000_000) as root:
        found = users(detect(root) or root)
    authors = args.authors or sorted(slug(name) for name in found)

    settings = load_settings()
    url = servers.postgres_uri(settings)
    db = warehouse.connect(servers.mongodb_uri(settings), "bench_real_corpus")
    chunker = pipeline.build_chunker(DEFAULT_MODEL)
    embedder = None if args.no_retrieval else load_embedder()
    retrieve, pool = (None, None) if args.no_retrieval else twin_search(settings, url)
    out = [
        f"Command: `python benchmarks/bench_real_corpus.py {' '.join(sys.argv[1:])}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average at start {os.getloadavg()[0]:.1f}",
        "",
        "| user | documents | failed | import s | features s (no embedding) | chunks "
        "| chrome lines raw -> cleaned | author paragraphs lost"
        + ("" if retrieve is None else " | title hit@5, cosine | title hit@5, `twin search`")
        + " |",
        "|---|---|---|---|---|---|---|---" + ("" if retrieve is None else "|---|---") + "|",
    ]
    notes: list[str] = []
    lost: list[str] = []
    titles: dict[str, str] = {}
    groups: dict[str, dict[str, str]] = defaultdict(dict)
    try:
        for author in authors:
            row, user_notes, user_lost = run_user(
                author, export, db, url, chunker, embedder, retrieve
            )
            out.append(row)
            notes += user_notes + [f"  - lost: {paragraph[:200]}" for paragraph in user_lost[:10]]
            lost += user_lost
            for doc in db["articles"].find({"author": author}):
                groups[f"{author}/{doc.get('platform')}"][doc["url"]] = doc["content"]
                titles[doc["url"]] = doc.get("title") or ""
        out += ["", *notes]
        if args.compare:
            out += ["", *compare(groups, titles, args.baseline_rev)]
        out += ["", *secrets_table()]
    finally:
        if pool is not None:
            pool.close()
        if own_servers:
            servers.down(settings)
            shutil.rmtree(settings.home, ignore_errors=True)
    report = "\n".join(out)
    print(report)
    if args.out:
        args.out.write_text(report + "\n", encoding="utf-8")
    if args.lost:
        args.lost.write_text("\n\n".join(lost) + "\n", encoding="utf-8")


def twin_search(settings: object, url: str) -> tuple[Callable[[str, str], list[str]], object]:
    """The API's retrieval (hybrid vector + full text, reranked), as `twin search` runs it: a
    function (query, author) -> URLs of the 5 chunks it returns, and the pool to close."""
    from twin_platform.monitoring import Trace
    from twin_platform.rag.pipeline import RagPipeline
    from twin_platform.rag.retriever import open_retriever

    retriever, pool = open_retriever(settings, url)  # type: ignore[arg-type]
    rag = RagPipeline(retriever, None, settings)  # type: ignore[arg-type]

    def retrieve(query: str, author: str) -> list[str]:
        found = rag.retrieve(query, Trace(route="bench", query=query), author=author, k=5)
        return [chunk.source_url for chunk in found.chunks]

    return retrieve, pool


def compare(groups: dict[str, dict[str, str]], titles: dict[str, str], rev: str) -> list[str]:
    """Chrome left, paragraphs lost and time of each cleaner, over the (user, platform) groups."""
    import trafilatura.meta

    scores: dict[str, Score] = defaultdict(Score)
    old = previous_cleaner(rev)
    for raws in groups.values():
        scores["this cleaner (corpus chrome, in memory)"].add(raws, this_cleaner(raws, titles))
        if old is not None:
            scores[f"previous cleaner (git {rev})"].add(raws, old)
        trafilatura.meta.reset_caches()  # its deduplication remembers across one group only
        scores["trafilatura extract, deduplicate=True"].add(raws, trafilatura_cleaner())
    rows = ["| cleaner | chrome lines left | paragraphs lost | seconds |", "|---|---|---|---|"]
    for name, score in scores.items():
        rows.append(
            f"| {name} | {score.chrome} | {score.lost} of {score.paragraphs} "
            f"| {score.seconds:.1f} |"
        )
    return rows


if __name__ == "__main__":
    main()
