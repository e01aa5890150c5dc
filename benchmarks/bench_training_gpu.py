"""LoRA SFT and DPO throughput on one GPU: the project's `full` profile against TRL's defaults.

Models are randomly initialised Llama shapes (Llama-3.2-1B, Llama-3.1-8B): weights cannot be
downloaded on the GPU machine, and random weights do the same arithmetic. Data are random-token
sequences of uniform length 128-2048 (SFT) and random prompt/chosen/rejected spans (DPO), the same
seeded data for every variant. Each (task, size, variant) runs in its own process so that memory
peaks and kernel patches do not leak between variants; results go to one JSON and one Markdown file.

Figures: tokens/s counts non-padding tokens; MFU = 6 x parameters x tokens/s / 989 TFLOP/s (H100
SXM dense bf16), the convention of the baseline in the environment notes; peak = the most memory
PyTorch allocated. Gradient accumulation is 1 everywhere so a step is one micro-batch.

  python benchmarks/bench_training_gpu.py --out /tmp/bench                  # everything, ~8 min on an H100
  python benchmarks/bench_training_gpu.py --plan profile --out /tmp/bench   # the profile vs TRL, twice
  python benchmarks/bench_training_gpu.py --only sft:1b:project              # one variant
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PEAK_FLOPS = 989e12

SHAPES: dict[str, dict[str, Any]] = {
    "1b": {  # Llama-3.2-1B
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "tie_word_embeddings": True,
    },
    "8b": {  # Llama-3.1-8B
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "tie_word_embeddings": False,
    },
}
VOCAB = 128_256
# A CPU smoke run of this script: BENCH_DEVICE=cpu BENCH_SHAPE=tiny (not a measurement).
DEVICE = os.environ.get("BENCH_DEVICE", "cuda")
if os.environ.get("BENCH_SHAPE") == "tiny":
    SHAPES = {
        size: {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "tie_word_embeddings": True,
        }
        for size in SHAPES
    }
    VOCAB = 2048
SCALE = 16 if os.environ.get("BENCH_SHAPE") == "tiny" else 1

# (task, size, variant) in priority order, so a time limit cuts the extras, not the comparison.
PLANS: dict[str, list[tuple[str, str, str]]] = {
    "all": [
        ("sft", "1b", "trl_default"),
        ("sft", "1b", "project"),
        ("sft", "8b", "trl_default"),
        ("sft", "8b", "project"),
        ("dpo", "1b", "trl_default"),
        ("dpo", "1b", "project"),
        ("dpo", "8b", "trl_default"),
        ("dpo", "8b", "project"),
        ("sft", "1b", "project_noliger"),
        ("sft", "8b", "project_noliger"),
    ],
    # Padding-free packing (best-fit bins of 2048 tokens, 4 to a micro-batch, flex attention with a
    # block-diagonal mask) against length-grouped batches and TRL's defaults, interleaved twice.
    "packed": [
        (task, size, variant)
        for _ in range(2)
        for task, size, variant in (
            ("sft", "1b", "trl_default"),
            ("sft", "1b", "grouped"),
            ("sft", "1b", "packed"),
            ("sft", "8b", "trl_default"),
            ("sft", "8b", "packed"),
            ("sft", "8b", "packed_nockpt"),
        )
    ],
    # The profile as committed against TRL's defaults, interleaved twice.
    "profile": [
        ("sft", size, variant)
        for _ in range(2)
        for size in ("1b", "8b")
        for variant in ("trl_default", "project")
    ],
    # Twice, interleaved: the machine speeds up over a run, so order alone can fake a gain.
    "sft-repeat": [
        (task, size, variant)
        for _ in range(2)
        for size in ("1b", "8b")
        for task, variant in (
            ("sft", "trl_default"),
            ("sft", "project"),
            ("sft", "project_noliger"),
        )
    ],
}


# Departures from the `full` profile that a variant measures (`project` is the profile as it is).
VARIANTS: dict[str, dict[str, Any]] = {
    "grouped": {"packing": False, "group_by_length": True, "per_device_train_batch_size": 8},
    "packed": {"packing": True, "per_device_train_batch_size": 4},
    "packed_nockpt": {
        "packing": True,
        "per_device_train_batch_size": 4,
        "gradient_checkpointing": False,
    },
}


def variant_args(task: str, variant: str, size: str) -> tuple[dict[str, Any], str | None]:
    """Trainer arguments and attention kernel of a variant: TRL's defaults, or the project's `full`
    profile."""
    common = {
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 10_000,
        "include_num_input_tokens_seen": "non_padding",
        "gradient_accumulation_steps": 1,
    }
    if variant == "trl_default":
        return common | {"max_length": 2048 if task == "sft" else 1024}, None
    from twin_platform.training.config import (
        attention_implementation,
        needs_checkpointing,
        profile,
        trainer_arguments,
    )

    hp = profile("full", task, **VARIANTS.get(variant.removesuffix("_noliger"), {}))  # type: ignore[arg-type]
    args = trainer_arguments(
        hp,
        stage=task,  # type: ignore[arg-type]
        output_dir=Path("/tmp/bench-out"),
        on_gpu=True,
        bf16_ok=True,
        gradient_checkpointing=needs_checkpointing(
            hp,
            stage=task,
            model=model_size(size),
            device_memory=device_memory(),  # type: ignore[arg-type]
        ),
    )
    args = {
        k: v for k, v in args.items() if k not in {"save_steps", "save_total_limit", "output_dir"}
    } | common
    if variant.endswith("_bs2"):  # the reference's micro-batch
        args["per_device_train_batch_size"] = 2
    if variant.endswith("_noliger"):
        args["use_liger_kernel"] = False
    return args, attention_implementation(hp, on_gpu=DEVICE == "cuda")


def device_memory() -> int | None:
    import torch

    return torch.cuda.get_device_properties(0).total_memory if DEVICE == "cuda" else None


def build(size: str, attention: str | None):  # type: ignore[no-untyped-def]
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    config = LlamaConfig(
        vocab_size=VOCAB, max_position_embeddings=4096, rope_theta=500_000.0, **SHAPES[size]
    )
    config._attn_implementation = attention or "sdpa"
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(DEVICE):
        model = LlamaForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2} | {f"t{i}": i for i in range(3, VOCAB)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )
    return model, tokenizer


def model_size(size: str):  # type: ignore[no-untyped-def]
    """Parameters, layers and width of a Llama shape, counted on the meta device (nothing allocated)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from twin_platform.training.config import ModelSize

    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, **SHAPES[size]))
    return ModelSize(
        parameters=sum(p.numel() for p in model.parameters()),
        layers=SHAPES[size]["num_hidden_layers"],
        hidden=SHAPES[size]["hidden_size"],
    )


def sft_dataset(n: int, seed: int = 0):  # type: ignore[no-untyped-def]
    import numpy as np
    from datasets import Dataset

    rng = np.random.default_rng(seed)
    lengths = rng.integers(128 // SCALE, 2048 // SCALE + 1, size=n)
    return Dataset.from_dict(
        {"input_ids": [rng.integers(3, VOCAB, size=int(k)).tolist() for k in lengths]}
    )


def dpo_dataset(n: int, seed: int = 0):  # type: ignore[no-untyped-def]
    import numpy as np
    from datasets import Dataset

    rng = np.random.default_rng(seed)

    def words(lo: int, hi: int) -> str:
        return " ".join(
            f"t{i}"
            for i in rng.integers(3, VOCAB, size=int(rng.integers(lo // SCALE, hi // SCALE)))
        )

    rows = [
        {
            "prompt": words(64, 512),
            "chosen": " " + words(64, 500) + " <eos>",
            "rejected": " " + words(64, 500) + " <eos>",
        }
        for _ in range(n)
    ]
    return Dataset.from_list(rows)


def worker(task: str, size: str, variant: str, warmup: int, steps: int) -> dict[str, Any]:
    """Train `warmup + steps` steps and time the last `steps` (device synchronised at each step end)."""
    import torch
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    n_params = model_size(size).parameters
    args, attention = variant_args(task, variant, size)
    model, tokenizer = build(size, attention)
    if DEVICE != "cuda":
        args |= {"bf16": False, "optim": "adamw_torch", "use_cpu": True}
    bs = args.get("per_device_train_batch_size", 8)
    if args.get("train_sampling_strategy") == "group_by_length":
        # Length-grouped batches come in mega-batches sorted longest first: time whole mega-batches.
        steps = max(steps, 50 if bs <= 2 else 12) - warmup
    lora = LoraConfig(
        r=32, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
    )

    marks: list[tuple[float, int]] = []

    class Timer(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):  # type: ignore[no-untyped-def]
            if DEVICE == "cuda":
                torch.cuda.synchronize()
            marks.append((time.perf_counter(), int(state.num_input_tokens_seen)))

    total = warmup + steps
    rows = max(400, total * bs)
    args |= {"output_dir": f"/tmp/bench-{task}-{size}-{variant}", "max_steps": total}
    if task == "sft":
        trainer = SFTTrainer(
            model=model,
            args=SFTConfig(**args),
            train_dataset=sft_dataset(rows),
            processing_class=tokenizer,
            peft_config=lora,
            callbacks=[Timer()],
        )
    else:
        trainer = DPOTrainer(
            model=model,
            args=DPOConfig(**args),
            train_dataset=dpo_dataset(rows),
            processing_class=tokenizer,
            peft_config=lora,
            callbacks=[Timer()],
        )
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    (t0, k0), (t1, k1) = marks[warmup - 1], marks[-1]
    tokens_s = (k1 - k0) / (t1 - t0)
    return {
        "task": task,
        "size": size,
        "variant": variant,
        "params": n_params,
        "batch": bs,
        "gradient_checkpointing": trainer.args.gradient_checkpointing,
        "sampling": trainer.args.train_sampling_strategy,
        "optim": str(trainer.args.optim),
        "liger": bool(getattr(trainer.args, "use_liger_kernel", False)),
        "steps_timed": len(marks) - warmup,
        "s_per_step": (t1 - t0) / (len(marks) - warmup),
        "tokens_per_s": tokens_s,
        "mfu": 6 * n_params * tokens_s / PEAK_FLOPS,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if DEVICE == "cuda" else float("nan"),
        "examples_per_s": bs * (len(marks) - warmup) / (t1 - t0),
    }


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| task | size | variant | batch | grad ckpt | sampling | s/step | examples/s | tokens/s | MFU | peak GiB | vs default |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    base: dict[tuple[str, str], float] = {}  # the latest default run of each (task, size)
    for r in results:
        if r.get("variant") == "trl_default" and "error" not in r:
            base[(r["task"], r["size"])] = r["tokens_per_s"]
        if "error" in r:
            lines.append(
                f"| {r['task']} | {r['size']} | {r['variant']} | failed: {r['error'][:80]} |||||||||"
            )
            continue
        ratio = (
            r["tokens_per_s"] / base[(r["task"], r["size"])]
            if (r["task"], r["size"]) in base
            else float("nan")
        )
        lines.append(
            f"| {r['task']} | {r['size']} | {r['variant']} | {r['batch']} | {r['gradient_checkpointing']} | {r['sampling']} "
            f"| {r['s_per_step']:.3f} | {r['examples_per_s']:.1f} | {r['tokens_per_s']:,.0f} | {r['mfu']:.1%} "
            f"| {r['peak_gib']:.1f} | {ratio:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("benchmarks/results/raw"),
        help="Folder for JSON/Markdown results.",
    )
    parser.add_argument(
        "--plan", choices=sorted(PLANS), default="all", help="Which list of variants."
    )
    parser.add_argument("--only", nargs="*", help="Run only these task:size:variant entries.")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed steps first.")
    parser.add_argument(
        "--steps",
        type=int,
        default=10,
        help="Timed steps (at least a mega-batch when length-grouped).",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=540,
        help="Stop starting variants after this many seconds.",
    )
    parser.add_argument("--variant-timeout-s", type=float, default=200)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        task, size, variant = args.worker.split(":")
        try:
            result = worker(task, size, variant, args.warmup, args.steps)
        except Exception as exc:  # reported per variant: one OOM must not hide the other figures
            result = {
                "task": task,
                "size": size,
                "variant": variant,
                "error": f"{type(exc).__name__}: {exc}",
            }
        print("RESULT " + json.dumps(result), flush=True)
        return

    args.out.mkdir(parents=True, exist_ok=True)
    plan = [p for p in PLANS[args.plan] if not args.only or ":".join(p) in args.only]
    started, results = time.monotonic(), []
    for task, size, variant in plan:
        if time.monotonic() - started > args.budget_s:
            print(f"budget spent: skipping {task}:{size}:{variant}", flush=True)
            continue
        t = time.monotonic()
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            f"{task}:{size}:{variant}",
            "--warmup",
            str(args.warmup),
            "--steps",
            str(args.steps),
        ]
        try:
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=args.variant_timeout_s,
                env=os.environ | {"TOKENIZERS_PARALLELISM": "false"},
            )
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            result = (
                json.loads(line[7:])
                if line
                else {"task": task, "size": size, "variant": variant, "error": proc.stderr[-300:]}
            )
            with (args.out / "logs.txt").open("a") as log:
                log.write(
                    f"==== {task}:{size}:{variant}\n{proc.stdout[-3000:]}{proc.stderr[-6000:]}\n"
                )
        except subprocess.TimeoutExpired:
            result = {
                "task": task,
                "size": size,
                "variant": variant,
                "error": f"timeout {args.variant_timeout_s}s",
            }
        result["wall_s"] = round(time.monotonic() - t, 1)
        results.append(result)
        print(json.dumps(result), flush=True)
        (args.out / "training_gpu.json").write_text(json.dumps(results, indent=2))
    md = table(results)
    (args.out / "training_gpu_table.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
