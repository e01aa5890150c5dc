"""Ingest throughput: crawling recorded pages from a local server, and importing a large export.

    .venv/bin/python benchmarks/bench_ingest.py --pages 500 --posts 5000 --output benchmarks/results/ingest.md

Crawl: N distinct article pages served on 127.0.0.1 (with a simulated network latency), collected
through the real path (SSRF guard, rate limits, trafilatura extraction, upserts into the embedded
warehouse): sequentially (1 request in flight) and bounded-concurrently, side by side, then a re-run
that finds everything unchanged. Import: a generated LinkedIn export (Shares.csv in a zip) of M posts,
parsed and upserted, then re-run. Everything runs in a throwaway TWIN_HOME.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import random
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

SENTENCES = [
    "Measure, then argue.",
    "Ship the boring thing first.",
    "Percentiles do not average.",
    "I alert on p99 over two consecutive 5-minute windows.",
    "Write it down before you fix it.",
    "A retry budget of 10% would have prevented our worst outage.",
    "Money goes in integer pence.",
    "Chunk size is a hyperparameter, not a belief.",
    "Deleting is the most underrated engineering skill.",
    "Idempotency is a promise to 3 a.m. you.",
    "A dashboard's title should be a question.",
]


def make_export(path: Path, posts: int) -> Path:
    rng = random.Random(42)
    csv_path = path.with_suffix(".csv")
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["Date", "ShareLink", "ShareCommentary", "SharedUrl", "MediaUrl", "Visibility"]
        )
        for i in range(posts):
            text = "\n\n".join(" ".join(rng.choices(SENTENCES, k=4)) for _ in range(3))
            writer.writerow(
                [
                    f"2024-{1 + i % 12:02d}-{1 + i % 28:02d} 08:00:00",
                    f"https://www.linkedin.com/feed/update/urn%3Ali%3Aactivity%3A{7100000000000000000 + i}",
                    f"Post {i}. {text}",
                    "",
                    "",
                    "MEMBER_NETWORK",
                ]
            )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(csv_path, "Basic_LinkedInDataExport/Shares.csv")
    return path


def timed(fn):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--pages", type=int, default=500, help="Recorded pages to crawl (default 500)."
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=50.0,
        help="Simulated server latency per page (default 50).",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=8,
        help="Requests in flight for the concurrent run (default 8).",
    )
    parser.add_argument(
        "--posts", type=int, default=5000, help="Posts in the generated export (default 5000)."
    )
    parser.add_argument("--output", type=Path, help="Write the results as Markdown here.")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="twin-bench-"))
    os.environ["TWIN_HOME"] = str(home)
    from fixtures.recorded_site import serve

    from twin_platform import servers
    from twin_platform.collection.ingest import ingest_author
    from twin_platform.collection.sources import AuthorConfig, SourceSpec
    from twin_platform.servers.process import free_port
    from twin_platform.settings import load_settings
    from twin_platform.storage.warehouse import connect

    os.environ["TWIN_MONGO_PORT"] = str(free_port())
    settings = load_settings()
    db = connect(servers.mongodb_uri(settings), "bench")
    rows: list[tuple[str, int, float, str]] = []

    def crawl_settings(in_flight: int):  # type: ignore[no-untyped-def]
        return load_settings(
            crawl_allow_networks=["127.0.0.1/32"],
            crawl_concurrency=in_flight,
            crawl_per_domain_concurrency=in_flight,
            crawl_per_domain_rps=1000.0,
        )

    try:
        with serve() as site:
            warm_up = AuthorConfig(
                name="warm-up", sources=[SourceSpec(url=f"{site.base_url}/bench/warm-up")]
            )
            ingest_author(warm_up, db, crawl_settings(1))  # imports trafilatura and feedparser once
            for label, in_flight, author_name in (
                ("sequential (1 in flight)", 1, "seq"),
                (f"concurrent ({args.concurrency} in flight)", args.concurrency, "conc"),
            ):
                query = f"?delay={args.latency_ms / 1000}"
                author = AuthorConfig(
                    name=author_name,
                    sources=[
                        SourceSpec(url=f"{site.base_url}/bench/{i}{query}")
                        for i in range(args.pages)
                    ],
                )
                report, seconds = timed(
                    lambda a=author, n=in_flight: ingest_author(a, db, crawl_settings(n))
                )
                rows.append(
                    (
                        f"crawl {args.pages} pages, {label}",
                        sum(c.new for c in report.counts.values()),
                        seconds,
                        f"failed {report.total_failed}, max in flight seen by the server {site.max_in_flight}",
                    )
                )
                site.max_in_flight = 0
            report, seconds = timed(
                lambda: ingest_author(author, db, crawl_settings(args.concurrency))
            )
            unchanged = sum(c.unchanged for c in report.counts.values())
            rows.append(
                (
                    f"re-crawl {args.pages} pages, concurrent, all unchanged",
                    unchanged,
                    seconds,
                    "no writes",
                )
            )

        export = make_export(home / "linkedin-export.zip", args.posts)
        from twin_platform.collection.importers import import_export

        collected, seconds = timed(lambda: import_export(export, "bench-import"))
        rows.append(
            (
                f"parse a {args.posts:,}-post export (zip)",
                len(collected.documents),
                seconds,
                "import_export only",
            )
        )
        author = AuthorConfig(name="bench-import", sources=[SourceSpec(path=export)])
        report, seconds = timed(lambda: ingest_author(author, db, settings))
        new = sum(c.new for c in report.counts.values())
        rows.append(
            (f"ingest a {args.posts:,}-post export (parse + upsert)", new, seconds, "all new")
        )
        report, seconds = timed(lambda: ingest_author(author, db, settings))
        rows.append(
            (
                f"re-ingest the {args.posts:,}-post export",
                sum(c.unchanged for c in report.counts.values()),
                seconds,
                "all unchanged",
            )
        )
    finally:
        servers.down(settings)

    table = ["| run | documents | seconds | documents/s | notes |", "|---|---|---|---|---|"]
    table += [f"| {name} | {n:,} | {s:.2f} | {n / s:,.0f} | {note} |" for name, n, s, note in rows]
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs (shared), Python {platform.python_version()}, {platform.system()}"
    text = "\n".join(
        [
            "# Ingest throughput",
            "",
            f"Command: `.venv/bin/python benchmarks/bench_ingest.py --pages {args.pages} --latency-ms {args.latency_ms:g} "
            f"--concurrency {args.concurrency} --posts {args.posts}`",
            "",
            f"Machine: {machine}. Warehouse: embedded nx-27017 (MongoDB protocol). All figures from one run.",
            "",
            *table,
            "",
        ]
    )
    print(text)
    if args.output:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
