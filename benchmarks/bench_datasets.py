"""Dataset generation throughput with the local model, and how the pair count scales with corpus size.

Loads the first N posts of the sample corpus (data/sample/exports/substack, HTML -> text) into
cleaned_documents of a throwaway TWIN_HOME, counts the extracts each corpus size yields (no LLM), then
builds both datasets once on the largest corpus with `--max-extracts` extracts (cold: every LLM call
paid) and again (warm: every answer from the response cache), and prints a Markdown report.

    .venv/bin/python benchmarks/bench_datasets.py --max-extracts 8 --sizes 4 8 16 24
"""

from __future__ import annotations

import argparse
import hashlib
import html
import os
import platform
import re
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AUTHOR = "bench-author"


def post_text(path: Path) -> str:
    raw = re.sub(r"</(p|h\d|li)>", "\n\n", path.read_text(encoding="utf-8"))
    return html.unescape(re.sub(r"<[^>]+>", "", raw)).strip()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--max-extracts", type=int, default=8, help="extracts sent to the LLM in the timed build"
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[4, 8, 16, 24], help="corpus sizes (documents)"
    )
    parser.add_argument(
        "--model", default=None, help="litellm model string (default TWIN_LLM_MODEL)"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the report to this file")
    args = parser.parse_args()

    os.environ["TWIN_HOME"] = tempfile.mkdtemp(prefix="bench-datasets-")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from twin_platform import servers
    from twin_platform.datasets.build import (
        BuildOptions,
        build_instruction_dataset,
        build_preference_dataset,
    )
    from twin_platform.datasets.extracts import cut_extracts, load_documents
    from twin_platform.settings import load_settings
    from twin_platform.storage.postgres import connect

    load = os.getloadavg()
    posts = sorted((ROOT / "data/sample/exports/substack/posts").glob("*.html"))
    settings = load_settings()
    try:
        with connect(servers.postgres_uri(settings)) as conn:
            for path in posts[: max(args.sizes)]:
                content = post_text(path)
                conn.execute(
                    "INSERT INTO cleaned_documents (document_id, author, category, platform, url, content,"
                    " content_hash, language) VALUES (%s, %s, 'articles', 'substack', %s, %s, %s, 'en')",
                    (
                        hashlib.sha256(path.name.encode()).hexdigest(),
                        AUTHOR,
                        f"sample://{path.name}",
                        content,
                        hashlib.sha256(content.encode()).hexdigest(),
                    ),
                )
            documents = load_documents(conn, AUTHOR)
            options = BuildOptions.from_settings(
                settings,
                AUTHOR,
                llm_model=args.model,
                max_extracts=args.max_extracts,
                min_samples=1,
            )
            by_size = {
                n: sum(
                    len(cut_extracts(d, options.min_extract_chars, options.max_extract_chars))
                    for d in documents[:n]
                )
                for n in args.sizes
            }
            runs = {}
            for label in ("cold", "warm (cached)"):
                started = time.perf_counter()
                instructions = build_instruction_dataset(
                    conn, options, settings.home / "datasets", settings.home / "cache"
                )
                preferences = build_preference_dataset(
                    conn,
                    instructions.artifact,
                    options,
                    settings.home / "datasets",
                    settings.home / "cache",
                )
                runs[label] = (time.perf_counter() - started, instructions, preferences)
    finally:
        servers.down(settings)

    cold_seconds, instructions, preferences = runs["cold"]
    extracts = instructions.steps["extracts"]
    instruction_yield = instructions.rows / extracts
    preference_yield = preferences.rows / extracts
    llm = instructions.generation
    lines = [
        "# Dataset generation benchmark",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_datasets.py --max-extracts {args.max_extracts} "
        f"--sizes {' '.join(map(str, args.sizes))}`",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores shared with other work (load average "
        f"{load[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end), Python {platform.python_version()}; "
        f"model `{options.generation.llm.model}` (llama.cpp, {settings.llm_threads} thread), concurrency {options.generation.concurrency}, "
        f"retries {options.generation.max_retries}.",
        "",
        "## One build of both datasets, cold vs cached (same run)",
        "",
        "| run | seconds | instruction rows | preference rows | rows / minute | LLM calls | cache hits |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, (seconds, ins, pref) in runs.items():
        calls = ins.generation["llm_calls"] + pref.generation["llm_calls"]
        hits = ins.generation["cache_hits"] + pref.generation["cache_hits"]
        lines.append(
            f"| {label} | {seconds:.1f} | {ins.rows} | {pref.rows} | {(ins.rows + pref.rows) / seconds * 60:.2f} "
            f"| {calls} | {hits} |"
        )
    warm_seconds = runs["warm (cached)"][0]
    lines += [
        "",
        f"Cold/cached time ratio: {cold_seconds / warm_seconds:.0f}x. Instruction step: {extracts} extracts, "
        f"{llm['requests']} requests, {llm['llm_calls']} calls, {llm['retries']} retries, "
        f"{llm['malformed_json']} malformed JSON, {llm['invalid']} invalid, {llm['failed']} failed; "
        f"{llm['completion_tokens']} completion tokens. Preference step: "
        f"{preferences.generation['llm_calls']} calls, {preferences.generation['completion_tokens']} completion tokens.",
        f"Yield per extract: {instruction_yield:.2f} instruction rows, {preference_yield:.2f} preference pairs.",
        "",
        "## Pair count vs corpus size",
        "",
        "Extracts are counted exactly; pairs are extracts x the yield measured above, capped by "
        f"TWIN_DATASET_MAX_EXTRACTS (default {settings.dataset_max_extracts}) per run.",
        "",
        "| documents | characters | extracts | instruction rows (projected, uncapped) | preference pairs (projected, uncapped) | LLM minutes at the cold rate |",
        "|---|---|---|---|---|---|",
    ]
    per_extract_seconds = cold_seconds / extracts
    for n, count in by_size.items():
        chars = sum(len(d.content) for d in documents[:n])
        lines.append(
            f"| {n} | {chars:,} | {count} | {count * instruction_yield:.0f} | {count * preference_yield:.0f} "
            f"| {count * per_extract_seconds / 60:.1f} |"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)


if __name__ == "__main__":
    main()
