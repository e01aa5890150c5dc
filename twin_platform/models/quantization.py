"""A promoted model as GGUF files for CPU serving: llama.cpp's own converter, then its quantizer.

The converter (`convert_hf_to_gguf.py` and the `gguf-py` it ships with) comes from the
llama-cpp-python source distribution: `scripts/install.sh` unpacks it into the virtualenv's
`share/twin-platform/llama.cpp`. It runs in a subprocess (it edits `sys.path` and imports every
architecture's module). Quantization is `llama_model_quantize` from the installed llama.cpp.
Each file is then scored on the held-out rows with llama.cpp itself, on the same token ids the
unquantized model was scored on, and timed for prefill and decode.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Quantization = Literal["Q8_0", "Q4_K_M"]
QUANTIZATIONS: tuple[Quantization, ...] = ("Q8_0", "Q4_K_M")
CONVERTER_DIR = Path(sys.prefix) / "share" / "twin-platform" / "llama.cpp"


class QuantizationError(RuntimeError):
    """Conversion or quantization failed; nothing was published."""


def converter_script() -> Path:
    script = CONVERTER_DIR / "convert_hf_to_gguf.py"
    if not script.is_file():
        raise QuantizationError(
            f"llama.cpp's converter is not installed at {script}: run scripts/install.sh"
        )
    return script


def convert_to_gguf(model_dir: Path, out: Path, timeout_s: float = 1800) -> Path:
    """An HF folder (merged weights + tokenizer) as one f16 GGUF file."""
    command = [sys.executable, str(converter_script()), str(model_dir), "--outtype", "f16"]
    result = subprocess.run(
        [*command, "--outfile", str(out)], capture_output=True, text=True, timeout=timeout_s
    )
    if result.returncode != 0 or not out.is_file():
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise QuantizationError(f"converting {model_dir} to GGUF failed: {tail}")
    return out


# Run in a child process, like the converter: llama.cpp prints a line per tensor it quantizes on the
# process's own stderr, and its failures can abort the process.
_QUANTIZE = """
import sys, llama_cpp
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + sys.argv[3])
params.nthread = int(sys.argv[4])
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), params))
"""


def quantize(
    source: Path, out: Path, kind: Quantization, threads: int = 2, timeout_s: float = 1800
) -> Path:
    command = [sys.executable, "-c", _QUANTIZE, str(source), str(out), kind, str(threads)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    if result.returncode != 0 or not out.is_file():
        tail = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        raise QuantizationError(f"llama.cpp could not quantize {source.name} to {kind}: {tail}")
    return out


@dataclass(frozen=True)
class FileScore:
    perplexity: float
    prefill_tokens_per_second: float
    decode_tokens_per_second: float


def score_gguf(
    path: Path,
    token_rows: Sequence[tuple[list[int], int]],
    threads: int = 2,
    decode_tokens: int = 32,
) -> FileScore:
    """Perplexity of the answer tokens of (token ids, answer start) rows, and the speed of the
    longest row's prefill and of greedy decoding after it."""
    import llama_cpp
    import numpy as np

    n_ctx = max(len(ids) for ids, _ in token_rows) + decode_tokens + 8
    llm = llama_cpp.Llama(
        model_path=str(path), n_ctx=n_ctx, n_threads=threads, logits_all=True, verbose=False
    )
    try:
        nll, tokens = 0.0, 0
        for ids, start in token_rows:
            llm.reset()
            llm.eval(ids)
            logits = np.asarray(llm.scores[start - 1 : len(ids) - 1], dtype=np.float64)
            logits -= logits.max(axis=1, keepdims=True)
            log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            nll -= float(log_probs[np.arange(len(ids) - start), ids[start:]].sum())
            tokens += len(ids) - start
        longest = max(token_rows, key=lambda row: len(row[0]))[0]
        llm.reset()
        started = time.perf_counter()
        llm.eval(longest)
        prefill = len(longest) / (time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(decode_tokens):
            llm.eval([llm.sample(temp=0.0)])
        decode = decode_tokens / (time.perf_counter() - started)
    finally:
        llm.close()
    return FileScore(math.exp(nll / tokens) if tokens else math.nan, prefill, decode)


def token_rows(
    tokenizer: Any, rows: Sequence[tuple[list[dict[str, str]], str]], max_answer_tokens: int
) -> list[tuple[list[int], int]]:
    """(prompt + answer token ids, answer start) per row, in the chat template, as the unquantized
    model is scored (`evaluation.scoring`)."""
    from twin_platform.evaluation.scoring import encode

    return [encode(tokenizer, prompt, answer, max_answer_tokens) for prompt, answer in rows]


@dataclass
class QuantizedFile:
    kind: str  # f16, Q8_0, Q4_K_M
    path: Path
    bytes: int
    score: FileScore

    def increase(self, reference: float) -> float:
        """Perplexity increase over the unquantized model, as a share."""
        return self.score.perplexity / reference - 1


@dataclass
class QuantizedModel:
    model: str  # registry name:version
    folder: Path
    unquantized_perplexity: float
    files: dict[str, QuantizedFile]
    seconds: float

    def file(self, kind: str) -> Path:
        return self.files[kind].path


def quantize_model(
    model_dir: Path,
    model: str,
    out_dir: Path,
    rows: Sequence[tuple[list[dict[str, str]], str]],
    lineage: dict[str, Any],
    max_answer_tokens: int = 256,
    threads: int = 2,
) -> QuantizedModel:
    """f16, Q8_0 and Q4_K_M GGUF files of an HF folder, each scored against the unquantized model,
    with a model card, published into `out_dir` in one rename (a failure publishes nothing)."""
    from twin_platform.evaluation.scoring import load_scorer, perplexity, score_answers
    from twin_platform.fsutil import publishing

    started = time.perf_counter()
    tokenizer, hf_model = load_scorer(str(model_dir), "cpu")
    reference = perplexity(score_answers(tokenizer, hf_model, rows, max_answer_tokens))
    ids = token_rows(tokenizer, rows, max_answer_tokens)
    del hf_model
    files: dict[str, QuantizedFile] = {}
    with publishing(out_dir, replace=True) as staging:
        f16 = convert_to_gguf(model_dir, staging / "model-f16.gguf")
        paths = {"f16": f16} | {
            kind: quantize(f16, staging / f"model-{kind}.gguf", kind, threads)
            for kind in QUANTIZATIONS
        }
        for kind, path in paths.items():
            files[kind] = QuantizedFile(
                kind, path, path.stat().st_size, score_gguf(path, ids, threads)
            )
        result = QuantizedModel(model, out_dir, reference, files, time.perf_counter() - started)
        (staging / "README.md").write_text(model_card(result, lineage))
    for item in files.values():
        item.path = out_dir / item.path.name
    result.seconds = time.perf_counter() - started
    return result


def model_card(result: QuantizedModel, lineage: dict[str, Any]) -> str:
    """A Hugging Face model card for the GGUF files: front matter, the files, how to run them."""
    from twin_platform.reporting import markdown_table

    rows = [
        {
            "file": f.path.name,
            "size MB": round(f.bytes / 1e6, 1),
            "held-out perplexity": round(f.score.perplexity, 3),
            "increase": f"{f.increase(result.unquantized_perplexity):+.2%}",
            "prefill tokens/s": round(f.score.prefill_tokens_per_second),
            "decode tokens/s": round(f.score.decode_tokens_per_second, 1),
        }
        for f in result.files.values()
    ]
    dataset = lineage.get("dataset", {})
    return f"""---
base_model: {lineage.get("base_model", "unknown")}
library_name: gguf
tags: [gguf, llama.cpp, llm-twin, twin-platform]
---
# {result.model} (GGUF)

The twin of {lineage.get("author", "its author")}, fine-tuned by Twin Platform (SFT then DPO) and
converted with llama.cpp's own converter and quantizer. Unquantized held-out perplexity:
{result.unquantized_perplexity:.3f} (the author's held-out documents, chat format).

{markdown_table(rows)}

Lineage: registry version `{result.model}`, dataset `{dataset.get("kind", "?")}`
`{dataset.get("version", "?")}`, training code `{lineage.get("code_version", "?")}`.

```python
from llama_cpp import Llama
llm = Llama(model_path="model-Q4_K_M.gguf", n_ctx=2048)
print(llm.create_chat_completion([{{"role": "user", "content": "Write a post about on-call."}}]))
```
"""
