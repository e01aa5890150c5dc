"""Checks that the installed llama.cpp runs on this CPU: `python -m twin_platform.llm.smoke_check`.

A llama.cpp build can load a model and answer a short prompt, then die with SIGILL on the first
prompt long enough for a batched matrix product (for example a wheel compiled for AMX on a machine
whose kernel does not grant it). The check therefore generates from a prompt of at least
`MIN_PROMPT_TOKENS` tokens, in a child process, so that a crash becomes one clear line.

`check_gguf` runs the same check on any GGUF before the API loads it in its own process: llama.cpp
aborts the whole process on some malformed files (a failed assertion in its tokenizer), and a
deployment must cost at most a refused switch, never the server.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time

MIN_PROMPT_TOKENS = 600
PARAGRAPH = (
    "A data platform earns trust one boring release at a time. Every job states what it reads, "
    "what it writes and how to run it again; every table says who owns it and how fresh it is. "
)


def long_prompt(count_tokens: object, min_tokens: int = MIN_PROMPT_TOKENS) -> str:
    """Text of at least `min_tokens` tokens by `count_tokens(text) -> int`."""
    text = PARAGRAPH
    while count_tokens(text) < min_tokens:  # type: ignore[operator]
        text += PARAGRAPH
    return text


def run_child(threads: int, model_path: str | None = None) -> None:
    """Load the GGUF (default: the bundled one) and generate from a long prompt; print one line of
    figures."""
    from twin_platform.llm.local import LocalChatModel, bundled_gguf_path

    model = LocalChatModel(model_path or bundled_gguf_path(), threads=threads)
    prompt = long_prompt(model.count_tokens)
    started = time.perf_counter()
    result = model.chat(
        [{"role": "user", "content": prompt + "\nSummarise this in one sentence."}],
        max_tokens=16,
        temperature=0.0,
    )
    elapsed = time.perf_counter() - started
    print(
        f"llama.cpp ok: {result.prompt_tokens} prompt tokens, {result.completion_tokens} new tokens"
        f" in {elapsed:.1f} s"
    )


def _child(
    threads: int, model_path: str | None, timeout_s: float | None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "twin_platform.llm.smoke_check", "--child"]
    command += ["--threads", str(threads)] + (["--model", model_path] if model_path else [])
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)


def check_gguf(model_path: str, threads: int = 1, timeout_s: float = 300) -> str | None:
    """None when `model_path` loads and answers a long prompt in a child process; else one line
    that says how it failed."""
    try:
        child = _child(threads, model_path, timeout_s)
    except subprocess.TimeoutExpired:
        return f"{model_path} did not answer within {timeout_s:g} s"
    if child.returncode == 0:
        return None
    if child.returncode < 0:
        return f"llama.cpp died with {signal.Signals(-child.returncode).name} on {model_path}"
    tail = (child.stderr.strip().splitlines() or ["no output"])[-1]
    return f"{model_path} failed to load or answer: {tail}"


def check(threads: int) -> int:
    """Run the child; translate a crash into one line that says what to do."""
    child = _child(threads, None, None)
    if child.returncode == 0:
        print(child.stdout.strip())
        return 0
    if child.returncode < 0:
        name = signal.Signals(-child.returncode).name
        print(
            f"error: the installed llama-cpp-python died with {name} on a {MIN_PROMPT_TOKENS}-token"
            " prompt: it was built for instructions this CPU does not run. Rebuild it portably:"
            " LLAMA_CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON'"
            " bash scripts/install.sh (or without -DGGML_AVX2=ON on CPUs older than 2013).",
            file=sys.stderr,
        )
    else:
        tail = (child.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"error: the llama.cpp smoke check failed: {tail}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(args.threads, args.model)
        return 0
    return check(args.threads)


if __name__ == "__main__":
    sys.exit(main())
