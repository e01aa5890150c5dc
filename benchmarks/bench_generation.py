"""Generation speed of the served model: time to first token (TTFT) and tokens/s.

CPU (here): the bundled SmolLM2-135M GGUF through the platform's runtime (llama.cpp), on a RAG-sized
prompt built exactly as the API builds it; one request at a time, then N concurrent requests (the
runtime serves them one after another, so TTFT grows with the queue).

GPU (`--device cuda`, run through the device tool): transformers `generate` in bf16 on randomly
initialised models of the real architectures (SmolLM2-135M, Llama-3.2-1B shapes; the 98 MB GGUF does
not fit a transfer, and speed does not depend on the weights' values), batching B concurrent
requests into one `generate` call; dynamic KV cache against the static (compiled) cache.

Serving (`--serving`, normally with `--device cuda`): the platform's runtime itself, `LocalChatModel`
on transformers, under N concurrent streaming requests from threads (RAG prompts, greedy): the slot
batcher (`TWIN_LLM_BATCHING`; compiled and replayed as CUDA graphs by default, `--modes` picks the
variants) against one request at a time behind its lock, in the same run. Random-init bf16 model of the first `--shapes` shape with
SmolLM2's tokenizer (`--tokenizer`: a 3.5 MB folder made from the bundled GGUF on first use, which
the device call carries); only tokens that start a word can win, so every request streams word by
word and runs to `--max-tokens`. `--shapes tiny` is a quick CPU dry run of the script.

    .venv/bin/python benchmarks/bench_generation.py --device cpu --output benchmarks/results/generation_cpu.md
    python benchmarks/bench_generation.py --device cuda --output $OUT/generation_gpu.md
    python3 benchmarks/bench_generation.py --device cuda --serving --shapes llama-3.2-1b \
        --concurrency-levels 1,8,64 --max-tokens 128 --lock-levels 1 --output $OUT/serving_gpu.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES = {  # "tiny": a CPU dry run of the script, nothing to report
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=2, num_key_value_heads=1, vocab_size=49152),
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, vocab_size=49152),
    "llama-3.2-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                         num_attention_heads=32, num_key_value_heads=8, vocab_size=128256),
}  # fmt: skip


DEFAULT_TOKENIZER = ROOT / ".bench" / "smollm2-tokenizer"
LOCK = "one at a time (lock)"
SLOTS = "slot batching (the default: compiled, CUDA graphs)"
ADAPTERS = "slot batching, compiled, 4 LoRA adapters (rank 16) + base, requests round-robin"


def rag_messages(request_id: int, words: int = 220) -> list[dict[str, str]]:
    """A RAG prompt as the API builds it (`build_messages` with no history); the context differs per
    request, as it does in real traffic (llama.cpp reuses the cached prefix of the previous prompt:
    only the system prompt is shared). Built with `chat_messages` alone, which imports nothing."""
    from twin_platform.prompts import chat_messages

    context = "\n\n".join(
        f"[{i}] (articles, https://example.org/{request_id}/{i})\n"
        + f"Note {request_id}-{i}. "
        + " ".join(
            ["Sourdough needs patience, warm water and a lively starter fed every morning."]
            * (words // 40)
        )
        for i in range(1, 4)
    )
    return chat_messages(
        f"Write post number {request_id} about baking bread at home.", "ada-quill", context
    )


def cpu_bench(requests: int, concurrency: int, max_tokens: int) -> list[str]:
    from twin_platform.llm.factory import open_chat_model
    from twin_platform.llm.options import LLMOptions
    from twin_platform.settings import load_settings

    model = open_chat_model(LLMOptions.from_settings(load_settings(), "twin-local/smollm2"))
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


def smollm2_tokenizer(folder: Path) -> Path:
    """SmolLM2's tokenizer and chat template as a small folder (3.5 MB) that travels to the GPU machine."""
    if not (folder / "tokenizer.json").is_file():
        from twin_platform.models.base_model import bundled_tokenizer_folder

        bundled_tokenizer_folder(folder)
    return folder


def random_served_model(shape: str, tokenizer_dir: Path, folder: Path) -> Path:
    """A random-init bf16 model of `shape` with the real tokenizer, saved where `LocalChatModel` loads it.

    Only tokens that start a word (and exist in the tokenizer) keep output weights: greedy decoding
    then never emits EOS or a special token, and every token finishes a word for the streamer.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        **SHAPES[shape],
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    word_starts = torch.zeros(config.vocab_size, dtype=torch.bool)
    word_starts[: len(pieces)] = torch.tensor([p.startswith("Ġ") for p in pieces])
    with torch.no_grad():
        model.get_output_embeddings().weight[~word_starts] = 0
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def random_adapter(model_folder: Path, folder: Path, seed: int, rank: int = 16) -> Path:
    """A PEFT LoRA adapter of `rank` on every linear layer of the model, random weights (speed only)."""
    import json

    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_folder)
    hidden, inner = config.hidden_size, config.intermediate_size
    kv = config.num_key_value_heads * (hidden // config.num_attention_heads)
    shapes = {"q_proj": (hidden, hidden), "k_proj": (hidden, kv), "v_proj": (hidden, kv),
              "o_proj": (hidden, hidden), "gate_proj": (hidden, inner), "up_proj": (hidden, inner),
              "down_proj": (inner, hidden)}  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for layer in range(config.num_hidden_layers):
        for name, (fan_in, fan_out) in shapes.items():
            part = "self_attn" if name[0] in "qkvo" else "mlp"
            key = f"base_model.model.model.layers.{layer}.{part}.{name}"
            weights[f"{key}.lora_A.weight"] = torch.randn(rank, fan_in, generator=generator) * 0.01
            weights[f"{key}.lora_B.weight"] = torch.randn(fan_out, rank, generator=generator) * 0.01
    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.to(torch.bfloat16) for k, v in weights.items()},
        str(folder / "adapter_model.safetensors"),
    )
    (folder / "adapter_config.json").write_text(json.dumps({"r": rank, "lora_alpha": rank}))
    return folder


class RoundRobin:
    """The model's requests spread over its base and its adapters in turn (one author per request)."""

    def __init__(self, model: Any, adapters: list[str | None]) -> None:
        self.model, self.adapters, self.batched = model, adapters, True
        self._next = 0

    def chat(self, messages: Any, **kwargs: Any) -> Any:
        return self.model.chat(messages, **kwargs)

    def stream(self, messages: Any, **kwargs: Any) -> Any:
        self._next += 1
        return self.model.stream(
            messages, adapter=self.adapters[self._next % len(self.adapters)], **kwargs
        )

    def close(self) -> None:
        self.model.close()


def stream_requests(
    model: Any, n: int, max_tokens: int, first_id: int
) -> tuple[list[tuple[float, float, str]], float]:
    """N streaming requests started together from threads: per request (TTFT s, end s, text) and the wall."""
    barrier = threading.Barrier(n + 1)
    results: dict[int, tuple[float, float, str]] = {}

    def one(i: int) -> None:
        messages = rag_messages(first_id + i)
        barrier.wait()
        started = time.perf_counter()
        first, deltas = None, []
        for delta in model.stream(messages, max_tokens=max_tokens, temperature=0.0):
            first = first or time.perf_counter()
            deltas.append(delta)
        end = time.perf_counter()
        results[i] = ((first or end) - started, end - started, "".join(deltas))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return [results[i] for i in range(n)], time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def serving_mode(
    label: str, model: Any, levels: list[int], max_tokens: int, deadline: float
) -> tuple[list[str], dict[int, tuple[float, float]], dict[int, list[str]]]:
    """Table rows of one runtime mode, (TTFT p50, aggregate tokens/s) and the texts per level.

    Each N is measured after an unmeasured round of N requests when batched: a serving process that
    has run a while has captured the CUDA graphs of its usual batch sizes (the lock has nothing to warm).
    """
    stream_requests(model, 1, 8, 90_000)  # loads kernels, allocates the cache
    rows, summary, texts = [], {}, {}
    for n in levels:
        if time.monotonic() > deadline:
            rows.append(f"| {label} | {n} | (skipped: time budget) | | | | |")
            continue
        if model.batched:
            stream_requests(model, n, max_tokens, 100_000 + 1000 * n)
        results, wall = stream_requests(model, n, max_tokens, 1000 * n)
        ttft = [r[0] * 1000 for r in results]
        per_request = [(max_tokens - 1) / max(r[1] - r[0], 1e-9) for r in results]
        aggregate = n * max_tokens / wall
        summary[n] = (statistics.median(ttft), aggregate)
        texts[n] = [r[2] for r in results]
        rows.append(
            f"| {label} | {n} | {statistics.median(ttft):.0f} | {percentile(ttft, 0.95):.0f} |"
            f" {statistics.median(per_request):.1f} | {aggregate:.0f} | {wall:.2f} |"
        )
        print(rows[-1], flush=True)
    return rows, summary, texts


def serving_bench(
    shape: str,
    device: str,
    levels: list[int],
    max_tokens: int,
    tokenizer_dir: Path,
    budget_s: float,
    mode_names: list[str],
    lock_levels: list[int],
) -> list[str]:
    """`LocalChatModel`'s batched runtime against the alternatives named in `mode_names`."""
    import torch

    from twin_platform.llm.local import LocalChatModel

    deadline = time.monotonic() + budget_s
    folder = random_served_model(shape, smollm2_tokenizer(tokenizer_dir), Path(tempfile.mkdtemp()))
    batch = max(levels)

    def slots(graphs: bool, compile_step: bool) -> Any:
        # Every argument given: LocalChatModel then reads no settings (no pydantic on the GPU machine).
        return LocalChatModel(
            folder,
            device=device,
            batching=True,
            max_batch_size=batch,
            cuda_graphs=graphs,
            compile_step=compile_step,
        )

    def with_adapters() -> Any:
        model = LocalChatModel(
            folder,
            device=device,
            batching=True,
            max_batch_size=batch,
            cuda_graphs=device == "cuda",
            compile_step=device == "cuda",
            adapters=8,
            max_adapter_rank=16,
        )
        names = [None]
        for i in range(4):
            names.append(f"twin-{i}")
            model.load_adapter(names[-1], random_adapter(folder, Path(tempfile.mkdtemp()), i))
        return RoundRobin(model, names)

    known: dict[str, tuple[str, Callable[[], Any]]] = {
        "slots": (SLOTS, lambda: slots(device == "cuda", True)),
        "slots-graphs": ("slot batching, CUDA graphs, not compiled", lambda: slots(True, False)),
        "slots-eager": ("slot batching, no CUDA graphs", lambda: slots(False, False)),
        "adapters": (ADAPTERS, with_adapters),
        # Last: the slowest, so a tight --budget-s cuts its largest N rather than a batched mode.
        "lock": (LOCK, lambda: LocalChatModel(folder, device=device, batching=False)),
    }
    modes = [known[name] for name in mode_names]
    rows, summaries, texts = [], {}, {}
    for label, load in modes:
        model = load()
        prompt_tokens = model.chat(rag_messages(1), max_tokens=1, temperature=0.0).prompt_tokens
        mode_levels = [n for n in levels if label != LOCK or n in lock_levels]
        mode_rows, summaries[label], texts[label] = serving_mode(
            label, model, mode_levels, max_tokens, deadline
        )
        rows += mode_rows
        model.close()
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    gpu = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    lines = [
        f"Device: {gpu}, torch {torch.__version__}; model: random-init {shape} shape, bf16, SmolLM2"
        f" tokenizer and chat template; prompt ~{prompt_tokens} tokens (RAG prompt, distinct per"
        f" request), {max_tokens} new tokens, greedy, streamed. TTFT = request start to first text delta"
        " (the runtime's text deltas); tokens/s per request = decode"
        " after the first delta; aggregate = all tokens / wall time of the N requests.",
        "",
        "| mode | concurrent requests | TTFT p50 ms | TTFT p95 ms | tokens/s per request (p50) | aggregate tokens/s | wall s |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Against one at a time (lock), same N:",
        "",
        "| mode | concurrent requests | TTFT p50 ratio (lower is better) | aggregate tokens/s ratio | greedy texts equal to the lock's |",
        "|---|---|---|---|---|",
    ]
    base = summaries.get(LOCK, {})
    for label, _ in modes:
        if label == LOCK:
            continue
        for n in levels:
            if n in base and n in summaries[label]:
                same = sum(a == b for a, b in zip(texts[label][n], texts[LOCK][n], strict=True))
                lines.append(
                    f"| {label} | {n} | {summaries[label][n][0] / base[n][0]:.3f} |"
                    f" {summaries[label][n][1] / base[n][1]:.1f}x | {same}/{n} |"
                )
    return lines


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
    parser.add_argument(
        "--serving",
        action="store_true",
        help="measure LocalChatModel under concurrent streams: one at a time vs batched",
    )
    parser.add_argument(
        "--concurrency-levels",
        default="1,8,32,64",
        help="serving: concurrent streaming requests per measurement",
    )
    parser.add_argument(
        "--tokenizer",
        type=Path,
        default=DEFAULT_TOKENIZER,
        help="serving: SmolLM2 tokenizer folder (made from the bundled GGUF if missing)",
    )
    parser.add_argument(
        "--modes",
        default="slots,slots-graphs,lock",
        help="serving: runtimes to compare (slots, slots-graphs, slots-eager, adapters, lock)",
    )
    parser.add_argument(
        "--lock-levels", default="1,8", help="serving: concurrency levels of the lock (it is slow)"
    )
    parser.add_argument("--requests", type=int, default=5, help="CPU: sequential requests")
    parser.add_argument("--concurrency", type=int, default=4, help="CPU: concurrent requests")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument(
        "--shapes",
        default="smollm2-135m,llama-3.2-1b",
        help="GPU: model shapes (serving: the first one; tiny: a CPU dry run)",
    )
    parser.add_argument("--batches", default="1,8,32,64", help="GPU: concurrent requests per batch")
    parser.add_argument("--prompt-len", type=int, default=512, help="GPU: prompt tokens")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=330,
        help="GPU and serving: stop starting new measurements after this many seconds",
    )
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    if args.serving:
        body = serving_bench(
            args.shapes.split(",")[0],
            args.device,
            [int(n) for n in args.concurrency_levels.split(",")],
            args.max_tokens,
            args.tokenizer,
            args.budget_s,
            args.modes.split(","),
            [int(n) for n in args.lock_levels.split(",")],
        )
    elif args.device == "cpu":
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
            f"## Generation, {args.device}{', serving runtime' if args.serving else ''}",
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
