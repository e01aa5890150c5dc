"""The `full` training profile on a GPU, on the sample author's own datasets: held-out perplexity
of base, SFT and DPO, and DPO reward accuracy on held-out preference pairs.

The GPU machine cannot download weights, and the bundled SmolLM2 is too large to carry there, so
the base is a randomly initialised Llama-3.2-1B shape with SmolLM2's tokenizer and chat template.
From random weights, any training lowers perplexity a lot: this run shows that the project's
`full` profile and trainers (the same `plan_run`, `sft.train`, `dpo.train` the assets call) run on
a GPU at the 1B scale on the data pipeline's real output, and how far one recipe moves it; it is
not a measure of voice quality. Inputs are copied here from a `make run` TWIN_HOME:

    python benchmarks/bench_full_profile_gpu.py --copy-inputs .twin build/device/full_profile
    # or, without a `make run` home: the sample author's paragraphs in the pipeline's formats
    python benchmarks/bench_full_profile_gpu.py --synthetic-inputs build/device/full_profile
    # on the GPU machine (wheels for trl, datasets, pydantic carried as the device README says):
    python3 benchmarks/bench_full_profile_gpu.py --inputs build/device/full_profile --out $OUT
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LLAMA_1B = {
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "tie_word_embeddings": True,
    "max_position_embeddings": 8192,
    "rope_theta": 500000.0,
}
TINY = {  # --tiny: a CPU smoke run of this script
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "tie_word_embeddings": True,
    "max_position_embeddings": 4096,
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def copy_inputs(home: Path, target: Path) -> None:
    """The latest instruction and preference dataset versions and the base model's tokenizer."""
    for kind in ("instruction", "preference"):
        versions = sorted((home / "datasets" / kind).glob("*/*"), key=lambda p: p.stat().st_mtime)
        shutil.copytree(versions[-1], target / kind, dirs_exist_ok=True)
    tokenizer = next((home / "base_models").glob("*/tokenizer.json")).parent
    (target / "tokenizer").mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy(tokenizer / name, target / "tokenizer" / name)


def synthetic_inputs(target: Path, seed: int = 0) -> None:
    """Datasets in the pipeline's formats without a `make run`: answers are runs of the sample
    author's own paragraphs (400 SFT rows of 1-6 paragraphs, 64 preference pairs whose rejected
    answer is a cut-off other paragraph), and the bundled model's tokenizer."""
    import random
    import re

    from twin_platform.models.base_model import bundled_tokenizer_folder
    from twin_platform.prompts import chat_messages

    paragraphs = [
        " ".join(p.split())
        for f in sorted((ROOT / "data" / "sample").rglob("*"))
        if f.suffix in {".md", ".html", ".txt", ".json"}
        for p in re.split(r"\n\s*\n", re.sub(r"<[^>]+>", " ", f.read_text(errors="ignore")))
        if len(p.split()) > 25
    ]
    rng = random.Random(seed)

    def instruction(i: int) -> dict[str, Any]:
        answer = " ".join(rng.sample(paragraphs, k=rng.randint(1, 6)))
        return {
            "messages": chat_messages(
                f"Write about {answer.split()[3]} ({i})", "ada-quill", answer=answer
            )
        }

    def preference(i: int) -> dict[str, Any]:
        chosen, other = rng.sample(paragraphs, k=2)
        return {
            "prompt": chat_messages(f"Write about {chosen.split()[2]} ({i})", "ada-quill"),
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": other[: len(other) // 3]}],
        }

    for kind, make, sizes in (
        ("instruction", instruction, {"train": 400, "test": 24}),
        ("preference", preference, {"train": 64, "test": 16}),
    ):
        (target / kind).mkdir(parents=True, exist_ok=True)
        for split, n in sizes.items():
            lines = (json.dumps(make(i)) + "\n" for i in range(n))
            (target / kind / f"{split}.jsonl").write_text("".join(lines))
    bundled_tokenizer_folder(target / "tokenizer")


def random_base(tokenizer_dir: Path, folder: Path, shape: dict[str, Any]) -> int:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **shape,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def held_out_rows(dataset: Path) -> list[tuple[list[dict[str, str]], str]]:
    rows = [json.loads(line) for line in (dataset / "test.jsonl").read_text().splitlines()]
    return [(r["messages"][:-1], r["messages"][-1]["content"]) for r in rows]


def preference_pairs(dataset: Path) -> list[Any]:
    from twin_platform.evaluation.preference import PreferencePair

    rows = [json.loads(line) for line in (dataset / "test.jsonl").read_text().splitlines()]
    return [
        PreferencePair(r["prompt"], r["chosen"][0]["content"], r["rejected"][0]["content"])
        for r in rows
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copy-inputs", nargs=2, type=Path, metavar=("TWIN_HOME", "TARGET"))
    parser.add_argument(
        "--synthetic-inputs", type=Path, metavar="TARGET", help="write synthetic inputs instead"
    )
    parser.add_argument("--inputs", type=Path, help="what --copy-inputs wrote")
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--work", type=Path, default=Path("/tmp/full-profile"))
    parser.add_argument(
        "--tiny", action="store_true", help="a tiny shape on CPU: checks the script"
    )
    args = parser.parse_args()
    if args.copy_inputs:
        copy_inputs(*args.copy_inputs)
        return
    if args.synthetic_inputs:
        synthetic_inputs(args.synthetic_inputs)
        return
    import torch

    from twin_platform.evaluation.preference import log_likelihoods, reward_accuracy
    from twin_platform.evaluation.scoring import load_scorer, perplexity, score_answers
    from twin_platform.training import dpo, sft
    from twin_platform.training.config import plan_run

    args.out.mkdir(parents=True, exist_ok=True)
    device = "cpu" if args.tiny else "cuda"
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "torch": torch.__version__,
    }

    def save() -> None:
        (args.out / "full_profile_gpu.json").write_text(json.dumps(results, indent=2, default=str))

    rows = held_out_rows(args.inputs / "instruction")
    results["held_out_rows"] = len(rows)

    def ppl(model: str) -> float:
        scorer = load_scorer(model, device)
        value = perplexity(score_answers(*scorer, rows))
        del scorer
        if device == "cuda":
            torch.cuda.empty_cache()
        return value

    base = args.work / "base"
    results["parameters"] = random_base(
        args.inputs / "tokenizer", base, TINY if args.tiny else LLAMA_1B
    )
    results["ppl_base"] = ppl(str(base))
    save()
    trained: dict[str, Any] = {}
    for stage, trainer, start, data in (
        ("sft", sft, str(base), args.inputs / "instruction"),
        ("dpo", dpo, None, args.inputs / "preference"),
    ):
        config = plan_run(
            stage,  # type: ignore[arg-type]
            profile_name="full",
            overrides={"max_steps": 2} if args.tiny else {},
            base_model=start or str(trained["sft"].merged_dir),
            dataset_dir=data,
            runs_dir=args.work / "runs",
            registry=None,
            model_name="bench",
            lineage={"author": "ada-quill"},
        )
        config.report_to = []
        started = time.perf_counter()
        trained[stage] = trainer.train(config)
        results[f"{stage}_s"] = round(time.perf_counter() - started, 1)
        results[f"{stage}_metrics"] = trained[stage].metrics
        results[f"{stage}_hyperparameters"] = config.hyperparameters.model_dump()
        results[f"ppl_{stage}"] = ppl(str(trained[stage].merged_dir))
        save()
    pairs = preference_pairs(args.inputs / "preference")
    policy = log_likelihoods(load_scorer(str(trained["dpo"].merged_dir), device), pairs, 512)
    reference = log_likelihoods(load_scorer(str(trained["sft"].merged_dir), device), pairs, 512)
    reward = reward_accuracy(policy, reference, 0.5)
    results |= {
        "dpo_reward_accuracy": reward.accuracy,
        "dpo_reward_margin": reward.margin,
        "dpo_pairs": reward.pairs,
        "ppl_drop_sft": 1 - results["ppl_sft"] / results["ppl_base"],
        "ppl_drop_dpo": 1 - results["ppl_dpo"] / results["ppl_base"],
    }
    save()
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
