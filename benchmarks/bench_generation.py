"""Generation speed of the served model: time to first token (TTFT) and tokens/s.

CPU (here): the bundled SmolLM2-135M GGUF through the platform's runtime (llama.cpp), on a RAG-sized
prompt built exactly as the API builds it; one request at a time, then N concurrent requests (the
runtime serves them one after another, so TTFT grows with the queue).

GPU (`--device cuda`, run through the device tool): transformers `generate` in bf16 on randomly
initialised models of the real architectures (SmolLM2-135M, Llama-3.2-1B shapes; the 98 MB GGUF does
not fit a transfer, and speed does not depend on the weights' values), batching B concurrent
requests into one `generate` call; dynamic KV cache against the static (compiled) cache.

    .venv/bin/python benchmarks/bench_generation.py --device cpu --output benchmarks/results/generation_cpu.md
    python benchmarks/bench_generation.py --device cuda --output $OUT/generation_gpu.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES = {
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, vocab_size=49152),
    "llama-3.2-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                         num_attention_heads=32, num_key_value_heads=8, vocab_size=128256),
}  # fmt: skip


def rag_messages(request_id: int, words: int = 220) -> list[dict[str, str]]:
    """A RAG prompt as the API builds it; the context differs per request, as it does in real traffic
    (llama.cpp reuses the cached prefix of the previous prompt: only the system prompt is shared)."""
    from twin_platform.rag.generation import build_messages

    context = "\n\n".join(
        f"[{i}] (articles, https://example.org/{request_id}/{i})\n"
        + f"Note {request_id}-{i}. "
        + " ".join(
            ["Sourdough needs patience, warm water and a lively starter fed every morning."]
            * (words // 40)
        )
        for i in range(1, 4)
    )
    return build_messages(
        f"Write post number {request_id} about baking bread at home.", "ada-quill", context
    )


def cpu_bench(requests: int, concurrency: int, max_tokens: int) -> list[str]:
    from twin_platform.llm.local import get_local_model

    model = get_local_model()
    prompt_tokens = sum(model.count_tokens(m["content"]) for m in rag_messages(0))
    list(model.stream(rag_messages(0), max_tokens=8, temperature=0.0))  # warm-up
    counter = iter(range(1, 10_000))

    def one() -> tuple[float, float, int]:
        messages = rag_messages(next(counter))
        started = time.perf_counter()
        first, n = None, 0
        for _ in model.stream(messages, max_tokens=max_tokens, temperature=0.0):
            first = first or time.perf_counter()
            n += 1
        end = time.perf_counter()
        assert first is not None
        return (first - started) * 1000, (n - 1) / max(end - first, 1e-9), n

    sequential = [one() for _ in range(requests)]
    results: list[tuple[float, float, int]] = []
    started = time.perf_counter()
    threads = [threading.Thread(target=lambda: results.append(one())) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    total_tokens = sum(r[2] for r in results)
    return [
        f"Model: {model.name} (llama.cpp, {os.environ.get('TWIN_LLM_THREADS') or os.cpu_count()} threads);"
        f" prompt ~{prompt_tokens} tokens (RAG prompt, chat template), up to {max_tokens} new tokens, greedy.",
        "",
        "| mode | requests | TTFT p50 ms | TTFT max ms | decode tokens/s per request | aggregate tokens/s |",
        "|---|---|---|---|---|---|",
        f"| one at a time | {requests} | {statistics.median(r[0] for r in sequential):.0f} |"
        f" {max(r[0] for r in sequential):.0f} | {statistics.median(r[1] for r in sequential):.1f} |"
        f" {sum(r[2] for r in sequential) / sum(r[0] / 1000 + r[2] / r[1] for r in sequential):.1f} |",
        f"| {concurrency} concurrent | {concurrency} | {statistics.median(r[0] for r in results):.0f} |"
        f" {max(r[0] for r in results):.0f} | {statistics.median(r[1] for r in results):.1f} |"
        f" {total_tokens / wall:.1f} |",
    ]


def timed_generate(model: object, ids: object, new_tokens: int, kwargs: dict[str, object]) -> float:
    import torch

    torch.cuda.synchronize()
    started = time.perf_counter()
    with torch.inference_mode():
        model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kwargs)  # type: ignore[attr-defined]
    torch.cuda.synchronize()
    return time.perf_counter() - started


def gpu_shape(
    shape: str, batches: list[int], prompt_len: int, new_tokens: int, deadline: float
) -> list[str]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**SHAPES[shape], max_position_embeddings=4096, tie_word_embeddings=True)
    model = LlamaForCausalLM(config).to("cuda", torch.bfloat16).eval()
    lines = []
    for cache in ("dynamic", "static"):
        for batch in batches:
            if time.monotonic() > deadline:
                lines.append(f"| {shape} | {cache} | {batch} | (skipped: time budget) | | | |")
                continue
            ids = torch.randint(0, config.vocab_size, (batch, prompt_len), device="cuda")
            kwargs: dict[str, object] = {
                "do_sample": False,
                "pad_token_id": 0,
                "eos_token_id": None,
            }
            if cache == "static":
                kwargs["cache_implementation"] = "static"
            timed_generate(
                model, ids, new_tokens, kwargs
            )  # warm-up (compiles the static-cache step)
            ttft = min(timed_generate(model, ids, 1, kwargs) for _ in range(3))
            total = timed_generate(model, ids, new_tokens, kwargs)
            step_ms = (total - ttft) / (new_tokens - 1) * 1000
            lines.append(
                f"| {shape} | {cache} | {batch} | {ttft * 1000:.1f} | {step_ms:.2f} |"
                f" {new_tokens / total:.1f} | {batch * new_tokens / total:.0f} |"
            )
            print(lines[-1], flush=True)
    return lines


def gpu_bench(
    shapes: list[str], batches: list[int], prompt_len: int, new_tokens: int, budget_s: float
) -> list[str]:
    import torch

    lines = [
        f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}; prompt {prompt_len} tokens,"
        f" {new_tokens} new tokens, greedy, bf16, random-init weights of the real shapes. TTFT = a"
        " 1-token generate (prefill); tokens/s over the whole generate.",
        "",
        "| shape | cache | batch | TTFT ms | decode ms/step | tokens/s per request | aggregate tokens/s |",
        "|---|---|---|---|---|---|---|",
    ]
    deadline = time.monotonic() + budget_s
    for shape in shapes:
        lines += gpu_shape(shape, batches, prompt_len, new_tokens, deadline)
        torch.cuda.empty_cache()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--requests", type=int, default=5, help="CPU: sequential requests")
    parser.add_argument("--concurrency", type=int, default=4, help="CPU: concurrent requests")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--shapes", default="smollm2-135m,llama-3.2-1b", help="GPU: model shapes")
    parser.add_argument("--batches", default="1,8,32,64", help="GPU: concurrent requests per batch")
    parser.add_argument("--prompt-len", type=int, default=512, help="GPU: prompt tokens")
    parser.add_argument(
        "--budget-s", type=float, default=330, help="GPU: stop starting new runs after this"
    )
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    if args.device == "cpu":
        body = cpu_bench(args.requests, args.concurrency, args.max_tokens)
    else:
        body = gpu_bench(
            args.shapes.split(","),
            [int(b) for b in args.batches.split(",")],
            args.prompt_len,
            args.max_tokens,
            args.budget_s,
        )
    command = " ".join(["benchmarks/bench_generation.py", *sys.argv[1:]])
    report = "\n".join(
        [
            f"## Generation, {args.device}",
            "",
            f"Command: `{command}`",
            f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()};"
            f" ran {time.perf_counter() - started:.0f} s.",
            "",
            *body,
        ]
    )
    print(report)
    if args.output:
        args.output.write_text(report + "\n")


if __name__ == "__main__":
    main()
