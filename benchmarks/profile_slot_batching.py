"""Where a decode step of the slot batcher goes (GPU): graph replay per bucket, prefill, and the
engine alone (token ids, no text) under N concurrent requests.

    python3 benchmarks/profile_slot_batching.py --shape llama-3.2-1b
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_generation import SHAPES  # noqa: E402


def main() -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from twin_platform.llm.slot_batching import SlotBatcher

    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="llama-3.2-1b")
    parser.add_argument("--prompt", type=int, default=411)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    config = LlamaConfig(
        **SHAPES[args.shape], max_position_embeddings=4096, tie_word_embeddings=True
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to("cuda", torch.bfloat16).eval()
    for compile_step in (False, True):
        started = time.perf_counter()
        batcher = SlotBatcher(
            model,
            [],
            max_batch_size=64,
            max_context=2048,
            cuda_graphs=True,
            compile_step=compile_step,
        )
        print(f"compile {compile_step}: capture {time.perf_counter() - started:.1f} s", flush=True)
        measure(batcher, config.vocab_size, args.prompt, args.tokens)
        batcher.close()


def measure(batcher: Any, vocab_size: int, prompt: int, new_tokens: int) -> None:
    import torch

    for b, graph in sorted(batcher._graphs.items()):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(50):
            graph.replay()
        torch.cuda.synchronize()
        print(f"replay b={b}: {(time.perf_counter() - t0) / 50 * 1000:.3f} ms", flush=True)
    batcher._cache.positions.zero_()

    def one(prompt_len: int, out: list[float]) -> None:
        ids = torch.randint(0, vocab_size, (prompt_len,)).tolist()
        t0 = time.perf_counter()
        first = None
        tokens: list[int] = []
        for row in batcher.generate(ids, new_tokens, 0.0, streaming=True):
            first, tokens = first or time.perf_counter(), row
        end = time.perf_counter()
        out.extend([(first or end) - t0, end - (first or end), len(tokens)])

    for n in (1, 1, 8, 64, 64):
        results: list[list[float]] = [[] for _ in range(n)]
        threads = [threading.Thread(target=one, args=(prompt + i, results[i])) for i in range(n)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        ttft = statistics.median(r[0] for r in results) * 1000
        per = statistics.median((r[2] - 1) / r[1] for r in results)
        total = sum(r[2] for r in results)
        print(
            f"engine n={n}: TTFT p50 {ttft:.0f} ms, per-request {per:.0f} tok/s,"
            f" aggregate {total / wall:.0f} tok/s, wall {wall:.2f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
