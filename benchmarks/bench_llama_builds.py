"""Prefill and decode speed of llama-cpp-python builds made with different CPU flags, side by side.

Each build is a wheel (`pip wheel llama-cpp-python` with its CMAKE_ARGS). Each measurement runs in a
child process that loads the bundled SmolLM2-135M GGUF from that wheel, evaluates a long prompt
(prefill) and then decodes greedily one token at a time; a child killed by a signal (SIGILL from an
instruction the CPU does not run) is recorded as such. Builds and thread counts are interleaved
within each repeat, so drift of a shared machine spreads over all of them.

    python benchmarks/bench_llama_builds.py --wheel portable=W1.whl --wheel avx512=W2.whl \\
        --output benchmarks/results/llama_builds.md
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
from llama_cpp import Llama
from twin_platform.llm.local import bundled_gguf_path
from twin_platform.llm.smoke_check import PARAGRAPH

threads, prompt_tokens, new_tokens = (int(a) for a in sys.argv[1:4])
llm = Llama(model_path=str(bundled_gguf_path()), n_ctx=4096, n_threads=threads, n_batch=512,
            verbose=False)
text = PARAGRAPH
while len(llm.tokenize(text.encode())) < prompt_tokens:
    text += PARAGRAPH
tokens = llm.tokenize(text.encode())[:prompt_tokens]
started = time.perf_counter()
llm.eval(tokens)
prefill = time.perf_counter() - started
started = time.perf_counter()
for _ in range(new_tokens):
    token = llm.sample(temp=0.0)
    llm.eval([token])
decode = time.perf_counter() - started
print(json.dumps({"prefill_tps": prompt_tokens / prefill, "decode_tps": new_tokens / decode}))
llm.close()
"""


def unpack(wheel: Path, into: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(into),
            str(wheel),
        ],
        check=True,
    )
    return into


def measure(site: Path, threads: int, prompt_tokens: int, new_tokens: int) -> dict[str, object]:
    env = {"PYTHONPATH": f"{site}:{Path(__file__).resolve().parents[1]}", "PATH": "/usr/bin:/bin"}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(threads), str(prompt_tokens), str(new_tokens)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if child.returncode < 0:
        return {"died": signal.Signals(-child.returncode).name}
    if child.returncode != 0:
        return {"died": (child.stderr.strip().splitlines() or ["error"])[-1][:120]}
    return json.loads(child.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def cpu_flags() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = line.split(":", 1)[1].split()
            return " ".join(f for f in flags if f.startswith(("avx512f", "amx", "avx2")))
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", action="append", required=True, help="NAME=PATH of a wheel")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--prompt-tokens", type=int, default=1024)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, help="write the Markdown report here too")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    builds = dict(item.split("=", 1) for item in args.wheel)
    work = Path(tempfile.mkdtemp(prefix="llama-builds-"))
    sites = {name: unpack(Path(path), work / name) for name, path in builds.items()}
    runs: dict[tuple[str, int], list[dict[str, object]]] = {}
    for _ in range(args.repeats):
        for name, site in sites.items():
            for count in threads:
                result = measure(site, count, args.prompt_tokens, args.new_tokens)
                runs.setdefault((name, count), []).append(result)
                print(name, count, result, flush=True)
    lines = [
        "# llama.cpp builds: prefill and decode tokens/s",
        "",
        f"Command: `python {' '.join(sys.argv)}`",
        f"Machine: {cpu_model()}, {len(Path('/proc/cpuinfo').read_text().split('processor')) - 1}"
        f" cores; CPU flags: {cpu_flags()}; {time.strftime('%Y-%m-%d')}",
        f"Model: bundled SmolLM2-135M-Instruct Q4_1 GGUF; prompt {args.prompt_tokens} tokens,"
        f" {args.new_tokens} greedy new tokens; median of {args.repeats} interleaved repeats.",
        "",
        "| build | threads | prefill tokens/s | decode tokens/s | runs |",
        "|---|---|---|---|---|",
    ]
    for (name, count), results in runs.items():
        died = [r["died"] for r in results if "died" in r]
        ok = [r for r in results if "died" not in r]
        if ok:
            prefill = statistics.median(float(r["prefill_tps"]) for r in ok)  # type: ignore[arg-type]
            decode = statistics.median(float(r["decode_tps"]) for r in ok)  # type: ignore[arg-type]
            cells = f"{prefill:.0f} | {decode:.1f}"
        else:
            cells = "- | -"
        note = f"{len(ok)} ok" + (f", died: {', '.join(map(str, died))}" if died else "")
        lines.append(f"| {name} | {count} | {cells} | {note} |")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.output:
        args.output.write_text(report)


if __name__ == "__main__":
    main()
