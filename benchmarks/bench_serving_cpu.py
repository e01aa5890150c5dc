"""CPU serving: the API's streaming decode against raw llama.cpp, the thread count, and the RAG context
budget against time to first token.

1. Decode (`--part decode`): the same GGUF, the same chat messages (a RAG-sized prompt cut from the
   sample author's articles, different per repeat so that prefill is real) and the same thread count,
   greedy, `--max-tokens` tokens: raw llama.cpp (llama-cpp-python's `create_chat_completion(stream=
   True)` in this process) against the served path (`POST /v1/chat/completions`, streamed over HTTP
   from a `twin serve` process with TWIN_LLM_THREADS set). Variants interleave; each is measured on an
   idle machine and on a busy one (a process spinning on one core beside it). Decode tokens/s =
   (tokens - 1) / (last token - first token); TTFT = first token - request.
2. Context budget (`--part context`): for each held-out prompt of an author's instruction dataset,
   the RAG pipeline (retrieval, context, the model's first token) at each budget of
   `--budgets`: whether the prompt's own document made it into the context (context recall),
   the prompt's tokens, and the time to the first token.

    .venv/bin/python benchmarks/bench_serving_cpu.py --output benchmarks/results/serving_cpu.md

Part 2 reads the platform's TWIN_HOME (after `make run`: the sample author's features and datasets).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twin_platform.llm.local import bundled_gguf_path  # noqa: E402
from twin_platform.prompts import chat_messages  # noqa: E402

QUESTIONS = [
    "How do you design retries for flaky upstream services?",
    "What do you think about feature flags in small teams?",
    "How should a team write incident reviews?",
    "When is a queue better than a direct call?",
    "What makes a good on-call rotation?",
    "How do you keep a data pipeline idempotent?",
]


def sample_paragraphs() -> list[str]:
    """Paragraphs of the sample author's exported articles, as plain text."""
    from twin_platform.collection.html import html_to_markdown

    paragraphs: list[str] = []
    for page in sorted((ROOT / "data/sample/exports/substack/posts").glob("*.html")):
        text = html_to_markdown(page.read_text(encoding="utf-8"))
        paragraphs += [p.strip() for p in text.split("\n\n") if len(p.split()) > 20]
    return paragraphs


def rag_messages(paragraphs: list[str], index: int, words: int) -> list[dict[str, str]]:
    """A prompt shaped as the API builds it: the persona, numbered passages, then the question."""
    start = (index * 7) % len(paragraphs)
    passages, total = [], 0
    for i, paragraph in enumerate(paragraphs[start:] + paragraphs[:start]):
        passages.append(f"[{i + 1}] (articles)\n{paragraph}")
        total += len(paragraph.split())
        if total >= words:
            break
    context = "\n\n".join(passages)
    question = QUESTIONS[index % len(QUESTIONS)]
    messages = chat_messages(question, "ada-quill")
    messages[-1]["content"] = f"Context:\n{context}\n\nQuestion: {question}"
    return messages


def timings(deltas: Iterator[str], started: float, count: callable) -> dict[str, float]:  # type: ignore[valid-type]
    first = last = None
    text = []
    for delta in deltas:
        now = time.perf_counter()
        first = first or now
        last = now
        text.append(delta)
    tokens = count("".join(text))
    assert first is not None and last is not None, "no token came back"
    decode = (tokens - 1) / (last - first) if tokens > 1 and last > first else float("nan")
    return {"ttft_s": first - started, "decode_tok_s": decode, "tokens": tokens}


def raw_stream(llama, messages, max_tokens: int) -> Iterator[str]:  # type: ignore[no-untyped-def]
    for chunk in llama.create_chat_completion(
        messages=messages, max_tokens=max_tokens, temperature=0.0, stream=True
    ):
        delta = chunk["choices"][0]["delta"].get("content")
        if delta:
            yield delta


def served_stream(url: str, model: str, messages, max_tokens: int) -> Iterator[str]:  # type: ignore[no-untyped-def]
    body = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
        "rag": False,
    }
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=120) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            delta = json.loads(line[6:])["choices"][0]["delta"].get("content")
            if delta:
                yield delta


@contextmanager
def api_server(home: Path, port: int, threads: int) -> Iterator[str]:
    env = os.environ | {
        "TWIN_HOME": str(home),
        "TWIN_LLM_THREADS": str(threads),
        "TWIN_ENV_FILE": "",
    }
    log = (home / f"api-{threads}.log").open("w")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "twin"), "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None:
                raise RuntimeError(f"twin serve exited; see {log.name}")
            time.sleep(1)
        else:
            raise RuntimeError(f"twin serve not ready in 300 s; see {log.name}")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)


@contextmanager
def busy_core(busy: bool) -> Iterator[None]:
    """One process spinning on a core: what else runs on a small shared machine."""
    if not busy:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1)
        yield
    finally:
        spinner.kill()
        spinner.wait()


def decode_part(args: argparse.Namespace) -> list[str]:
    from llama_cpp import Llama

    gguf = Path(args.gguf) if args.gguf else bundled_gguf_path()
    paragraphs = sample_paragraphs()
    home = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    raws = {
        t: Llama(model_path=str(gguf), n_ctx=2048, n_threads=t, verbose=False) for t in args.threads
    }

    def count(text: str) -> int:
        return len(raws[args.threads[0]].tokenize(text.encode(), add_bos=False, special=False))

    results: dict[tuple[str, int, str], list[dict[str, float]]] = {}
    with (
        api_server(home, args.port, args.threads[0]) as url_a,
        api_server(home, args.port + 1, args.threads[-1]) as url_b,
    ):
        urls = {args.threads[0]: url_a, args.threads[-1]: url_b}
        model = httpx.get(f"{url_a}/v1/models").json()["data"][0]["id"]
        for load in ("idle", "busy"):
            with busy_core(load == "busy"):
                for repeat in range(args.repeats + 1):  # the first round warms up
                    messages = rag_messages(paragraphs, repeat, args.context_words)
                    for threads in args.threads:
                        for variant in ("raw", "served"):
                            started = time.perf_counter()
                            stream = (
                                raw_stream(raws[threads], messages, args.max_tokens)
                                if variant == "raw"
                                else served_stream(urls[threads], model, messages, args.max_tokens)
                            )
                            measured = timings(stream, started, count)
                            if repeat:
                                results.setdefault((load, threads, variant), []).append(measured)
                            print(load, threads, variant, repeat, measured, flush=True)
    prompt_tokens = count(json.dumps(rag_messages(paragraphs, 1, args.context_words)))
    lines = [
        "## Streaming decode: served against raw llama.cpp",
        "",
        f"GGUF `{gguf.name}`, RAG prompt of about {prompt_tokens} tokens (sample author's text,"
        f" different per repeat), greedy, {args.max_tokens} new tokens, {args.repeats} repeats per"
        " variant after one warm-up round, variants interleaved. Medians.",
        "",
        "| machine | threads | raw decode tok/s | served decode tok/s | served / raw | raw TTFT s |"
        " served TTFT s |",
        "|---|---|---|---|---|---|---|",
    ]
    for load in ("idle", "busy"):
        for threads in args.threads:
            raw = results[(load, threads, "raw")]
            served = results[(load, threads, "served")]
            raw_decode = statistics.median(r["decode_tok_s"] for r in raw)
            served_decode = statistics.median(r["decode_tok_s"] for r in served)
            lines.append(
                f"| {load} | {threads} | {raw_decode:.1f} | {served_decode:.1f} |"
                f" {served_decode / raw_decode:.2f} |"
                f" {statistics.median(r['ttft_s'] for r in raw):.2f} |"
                f" {statistics.median(r['ttft_s'] for r in served):.2f} |"
            )
    return lines


def context_part(args: argparse.Namespace) -> list[str]:
    from twin_platform.datasets.artifact import DatasetArtifact
    from twin_platform.datasets.build import read_samples
    from twin_platform.evaluation.run import _one_per_document
    from twin_platform.monitoring import Trace
    from twin_platform.rag import context as ctx
    from twin_platform.rag.generation import build_messages
    from twin_platform.rag.pipeline import RagPipeline
    from twin_platform.rag.retriever import open_retriever
    from twin_platform.servers import postgres_uri
    from twin_platform.serving.deployments import DeploymentStore
    from twin_platform.serving.models import ServedModels
    from twin_platform.settings import load_settings

    settings = load_settings()
    folder = settings.datasets_dir / "instruction" / args.author
    version = max(folder.iterdir(), key=lambda p: p.stat().st_mtime)
    dataset = DatasetArtifact("instruction", args.author, version.name, version)
    samples = _one_per_document(read_samples(dataset)["test"])
    retriever, pool = open_retriever(settings, postgres_uri(settings))
    models = ServedModels(settings, DeploymentStore(settings.deployments_dir), 1)
    pipeline = RagPipeline(retriever, models, settings)
    lease = models.acquire(args.author)
    model = lease.model
    rows = []
    try:
        for budget in args.budgets:
            for sample in samples:
                started = time.perf_counter()
                retrieval = pipeline.retrieve(
                    sample.instruction,
                    Trace(route="bench", query=sample.instruction),
                    author=args.author,
                )
                context = ctx.assemble(retrieval.chunks, budget, model.count_tokens)
                messages = build_messages(sample.instruction, args.author, context.text)
                stream = model.stream(messages, max_tokens=1, temperature=0.0)
                next(iter(stream), None)
                ttft = time.perf_counter() - started
                rows.append(
                    {
                        "budget": budget,
                        "recall": any(c.document_id == sample.document_id for c in context.chunks),
                        "tokens": model.count_tokens(json.dumps(messages)),
                        "ttft": ttft,
                    }
                )
    finally:
        models.release(lease)
        pool.close()
    lines = [
        "## RAG context budget: context recall against time to first token",
        "",
        f"Author `{args.author}`, {len(samples)} held-out prompts (one per held-out document) of"
        f" instruction dataset `{version.name}`; TWIN_LLM_THREADS={settings.llm_threads}; TTFT ="
        " retrieval + context + prefill to the first token, in process.",
        "",
        "| budget tokens | context recall | prompt tokens (median) | TTFT median s | TTFT max s |",
        "|---|---|---|---|---|",
    ]
    for budget in args.budgets:
        chosen = [r for r in rows if r["budget"] == budget]
        lines.append(
            f"| {budget} | {sum(r['recall'] for r in chosen) / len(chosen):.2f} |"
            f" {statistics.median(r['tokens'] for r in chosen):.0f} |"
            f" {statistics.median(r['ttft'] for r in chosen):.2f} |"
            f" {max(r['ttft'] for r in chosen):.2f} |"
        )
    return lines


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["decode", "context", "all"], default="all")
    parser.add_argument("--gguf", help="GGUF to serve (default: the bundled SmolLM2-135M)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--context-words", type=int, default=450)
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--author", default="ada-quill")
    parser.add_argument("--budgets", type=int, nargs="+", default=[256, 512, 768, 1024])
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    command = "python " + " ".join(sys.argv)
    lines = [
        "# CPU serving benchmark",
        "",
        f"`{command}` on {cpu_name()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}.",
        "",
    ]
    if args.part in ("decode", "all"):
        lines += [*decode_part(args), ""]
    if args.part in ("context", "all"):
        lines += [*context_part(args), ""]
    report = "\n".join(lines)
    print(report)
    if args.output:
        args.output.write_text(report + "\n")


if __name__ == "__main__":
    main()
