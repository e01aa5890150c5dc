"""The quick training profile on the sample author: time, held-out perplexity, DPO reward accuracy.

Builds the sample author's datasets in a throwaway TWIN_HOME with the embedded defaults (template
instructions, rejected answers from the bundled model), then trains SFT and DPO with the `quick`
profile plus the overrides given, and scores the held-out documents under the base, SFT and DPO
models. Used to choose the quick profile's hyperparameters within `make run`'s time budget:

    python benchmarks/bench_quick_profile.py --sft '{"num_train_epochs": 1}' --output out.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any


def prepare(home: Path) -> dict[str, Any]:
    """Sample author -> cleaned documents -> datasets; the base model folder."""
    from twin_platform import servers
    from twin_platform.collection.ingest import ingest_author
    from twin_platform.collection.sources import SAMPLE_AUTHOR, SAMPLE_AUTHORS_FILE, load_sources
    from twin_platform.datasets.build import (
        BuildOptions,
        build_instruction_dataset,
        build_preference_dataset,
    )
    from twin_platform.features.pipeline import sync_cleaned_documents
    from twin_platform.models.base_model import prepare_base_model
    from twin_platform.settings import load_settings
    from twin_platform.storage.postgres import connect
    from twin_platform.storage.warehouse import connect as warehouse

    settings = load_settings()
    db = warehouse(servers.mongodb_uri(settings), settings.mongodb_database)
    author = load_sources(SAMPLE_AUTHORS_FILE).get(SAMPLE_AUTHOR)
    assert author is not None
    ingest_author(author, db, settings)
    timings: dict[str, float] = {}
    with connect(servers.postgres_uri(settings)) as conn:
        sync_cleaned_documents(db, conn, SAMPLE_AUTHOR)
        options = BuildOptions.from_settings(settings, SAMPLE_AUTHOR)
        started = time.perf_counter()
        instructions = build_instruction_dataset(
            conn, options, settings.datasets_dir, settings.llm_cache_dir
        )
        timings["instruction_dataset_s"] = time.perf_counter() - started
        started = time.perf_counter()
        preferences = build_preference_dataset(
            conn, instructions.artifact, options, settings.datasets_dir, settings.llm_cache_dir
        )
        timings["preference_dataset_s"] = time.perf_counter() - started
    started = time.perf_counter()
    base = prepare_base_model(None, settings.base_models_dir)
    timings["base_model_s"] = time.perf_counter() - started
    return {
        "settings": settings,
        "instructions": instructions.artifact,
        "preferences": preferences.artifact,
        "base": base,
        "timings": timings,
        "steps": {"instruction": instructions.steps, "preference": preferences.steps},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sft", default="{}", help="JSON overrides of the quick SFT profile")
    parser.add_argument("--dpo", default="{}", help="JSON overrides of the quick DPO profile")
    parser.add_argument("--skip-dpo", action="store_true")
    parser.add_argument("--home", type=Path, help="reuse a TWIN_HOME (datasets and base model)")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="bench-quick-"))
    os.environ["TWIN_HOME"] = str(home)
    os.environ["TWIN_ENV_FILE"] = ""
    os.environ.setdefault("WANDB_MODE", "disabled")

    from twin_platform.evaluation.preference import (
        PreferencePair,
        log_likelihoods,
        reward_accuracy,
    )
    from twin_platform.evaluation.scoring import load_scorer, perplexity, score_answers
    from twin_platform.training import dpo, sft
    from twin_platform.training.config import plan_run

    ready = prepare(home)
    settings = ready["settings"]
    test_rows = [
        (row["messages"][:-1], row["messages"][-1]["content"])
        for row in ready["instructions"].read_split("test")
    ]
    results: dict[str, Any] = {"timings": ready["timings"], "steps": ready["steps"]}

    def held_out_ppl(model: str) -> float:
        tokenizer, hf_model = load_scorer(model, "cpu")
        return perplexity(score_answers(tokenizer, hf_model, test_rows))

    results["ppl_base"] = held_out_ppl(str(ready["base"].path))
    lineage = {"author": "ada-quill"}
    config = plan_run(
        "sft",
        profile_name="quick",
        overrides=json.loads(args.sft),
        base_model=str(ready["base"].path),
        dataset_dir=ready["instructions"].path,
        runs_dir=settings.training_dir,
        registry=None,
        model_name="bench",
        lineage=lineage,
    )
    config.report_to = []
    started = time.perf_counter()
    trained = sft.train(config)
    results["sft_s"] = time.perf_counter() - started
    results["sft_steps"] = trained.metrics["steps"]
    results["ppl_sft"] = held_out_ppl(str(trained.merged_dir))
    if not args.skip_dpo:
        config = plan_run(
            "dpo",
            profile_name="quick",
            overrides=json.loads(args.dpo),
            base_model=str(trained.merged_dir),
            dataset_dir=ready["preferences"].path,
            runs_dir=settings.training_dir,
            registry=None,
            model_name="bench",
            lineage=lineage,
        )
        config.report_to = []
        started = time.perf_counter()
        tuned = dpo.train(config)
        results["dpo_s"] = time.perf_counter() - started
        results["ppl_dpo"] = held_out_ppl(str(tuned.merged_dir))
        pairs = [
            PreferencePair(
                row["prompt"], row["chosen"][0]["content"], row["rejected"][0]["content"]
            )
            for row in ready["preferences"].read_split("test")
        ]
        policy = log_likelihoods(load_scorer(str(tuned.merged_dir), "cpu"), pairs, 512)
        reference = log_likelihoods(load_scorer(str(trained.merged_dir), "cpu"), pairs, 512)
        reward = reward_accuracy(policy, reference, config.hyperparameters.beta)
        results["dpo_reward_accuracy"] = reward.accuracy
        results["dpo_reward_margin"] = reward.margin
        results["dpo_pairs"] = reward.pairs
        results["dpo_dir"] = str(tuned.merged_dir)
    results["sft_dir"] = str(trained.merged_dir)
    results["home"] = str(home)
    results["test_rows"] = len(test_rows)
    text = json.dumps(results, indent=2, default=str)
    print(text)
    if args.output:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
