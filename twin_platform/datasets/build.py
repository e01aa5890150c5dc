"""Build the two datasets of an author, step by step, counting what every step keeps and drops.

- Instruction dataset (back-translation): the author's extracts are the answers, so every answer is in
  the author's own words; the LLM writes the instruction each extract answers.
- Preference dataset: the same prompts and splits; chosen = the author's text, rejected = what the
  model answers to the prompt in the training chat format; plus user corrections from feedback
  that a reviewer approved (`datasets.feedback`): unreviewed ones never reach a dataset.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import psycopg

from twin_platform.datasets import curation, extracts, generation
from twin_platform.datasets.artifact import (
    SPLITS,
    DatasetArtifact,
    DatasetKind,
    record_version,
    to_jsonl,
    write_artifact,
)
from twin_platform.datasets.card import build_card, build_readme
from twin_platform.datasets.curation import RuleConfig, Sample
from twin_platform.datasets.feedback import load_feedback_pairs
from twin_platform.datasets.generation import (
    GenerationOptions,
    GenerationStats,
    Generator,
    ResponseCache,
)
from twin_platform.datasets.holdout import split_documents
from twin_platform.datasets.instructions import template_samples
from twin_platform.llm.options import LLMOptions, is_bundled
from twin_platform.prompts import chat_messages
from twin_platform.settings import Settings

SOURCES_FILE = "sources.jsonl"


class DatasetTooSmallError(RuntimeError):
    """Fewer rows than the configured minimum survived generation and curation."""


@dataclass(frozen=True)
class BuildOptions:
    """How an author's datasets are built; `from_settings` is the one place their values come from.

    The fields without defaults are settings; the others are the recipe's constants.
    """

    author: str
    generation: GenerationOptions
    instructions: Literal["template", "llm"]
    llm_budget_s: float
    heldout_share: float
    min_samples: int
    seed: int
    rejected_max_tokens: int
    section_chars: int = 1200  # template rows: the author's text per row (about 300 tokens)
    min_extract_chars: int = 300  # llm rows: the extracts the LLM writes an instruction for
    max_extract_chars: int = 1000
    languages: tuple[str, ...] = ("en",)
    near_duplicate_threshold: float = 0.8
    decontamination_ngram: int = 13
    min_feedback_chars: int = 20
    rules: RuleConfig = field(default_factory=RuleConfig)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        author: str,
        llm_model: str | None = None,
        min_samples: int | None = None,
    ) -> BuildOptions:
        llm = LLMOptions.from_settings(settings, llm_model)
        generation = GenerationOptions(
            llm=llm,
            concurrency=settings.llm_concurrency,
            max_retries=settings.llm_max_retries,
            seed=settings.dataset_seed,
        )
        instructions = settings.dataset_instructions
        if instructions == "auto":
            instructions = "template" if is_bundled(llm.model) else "llm"
        return cls(
            author=author,
            generation=generation,
            instructions=instructions,
            llm_budget_s=settings.dataset_llm_budget_s,
            heldout_share=settings.dataset_heldout_share,
            min_samples=min_samples or settings.dataset_min_samples,
            seed=settings.dataset_seed,
            rejected_max_tokens=settings.dataset_answer_max_tokens,
        )

    def recipe(self, kind: DatasetKind) -> dict[str, Any]:
        """What, besides the rows, defines a version: generator, prompts and curation settings."""
        return {
            "kind": kind,
            "instructions": self.instructions,
            "generator_model": self.generation.llm.model,
            "temperature": self.generation.temperature,
            "instruction_prompt": generation.INSTRUCTION_SYSTEM + generation.INSTRUCTION_USER,
            "seed": self.seed,
            "heldout_share": self.heldout_share,
            "section_chars": self.section_chars,
            "extract_chars": [self.min_extract_chars, self.max_extract_chars],
            "rules": self.rules.__dict__,
            "near_duplicate_threshold": self.near_duplicate_threshold,
            "decontamination_ngram": self.decontamination_ngram,
        }


@dataclass
class BuildReport:
    """What a build made and what each step did; the Dagster asset turns it into metadata."""

    artifact: DatasetArtifact
    steps: dict[str, int]  # curation steps in order: rows in, rows dropped per reason, rows out
    pii: dict[str, int]
    generation: dict[str, Any]
    splits: dict[str, list[Sample]]
    seconds: float

    @property
    def rows(self) -> int:
        return sum(len(rows) for rows in self.splits.values())

    @property
    def samples_per_minute(self) -> float:
        return round(self.rows / self.seconds * 60, 2) if self.seconds else 0.0


def instruction_row(sample: Sample, author: str) -> dict[str, Any]:
    return {"messages": chat_messages(sample.instruction, author=author, answer=sample.answer)}


def preference_row(sample: Sample, author: str) -> dict[str, Any]:
    return {
        "prompt": chat_messages(sample.instruction, author=author),
        "chosen": [{"role": "assistant", "content": sample.answer}],
        "rejected": [{"role": "assistant", "content": sample.rejected or ""}],
    }


def _generator(options: BuildOptions, cache_dir: Path) -> Generator:
    return Generator(options.generation, ResponseCache(cache_dir), GenerationStats())


def _curate_common(
    samples: list[Sample], heldout: set[str], options: BuildOptions, steps: dict[str, int]
) -> tuple[dict[str, list[Sample]], Counter[str]]:
    """Rules, PII, duplicates, the split by document (held-out documents' rows are `test`), then
    decontamination of `train` against `test`; fills `steps` in order."""
    samples, dropped = curation.apply_rules(samples, options.rules)
    steps.update({f"dropped_rule_{reason}": n for reason, n in sorted(dropped.items())})
    samples, pii = curation.scrub_samples(samples)
    samples, steps["dropped_exact_duplicates"] = curation.drop_exact_duplicates(samples)
    samples, steps["dropped_near_duplicates"] = curation.drop_near_duplicates(
        samples, options.near_duplicate_threshold
    )
    splits = {
        "train": [s for s in samples if s.document_id not in heldout],
        "test": [s for s in samples if s.document_id in heldout],
    }
    splits, steps["dropped_decontamination"] = curation.decontaminate(
        splits, options.decontamination_ngram
    )
    return splits, pii


def _ensure_minimum(
    kind: str,
    options: BuildOptions,
    splits: dict[str, list[Sample]],
    steps: dict[str, int],
    stats: GenerationStats,
) -> None:
    total = sum(len(rows) for rows in splits.values())
    if total < options.min_samples:
        summary = ", ".join(f"{k}={v}" for k, v in steps.items())
        errors = f"; LLM errors: {stats.error_samples}" if stats.error_samples else ""
        raise DatasetTooSmallError(
            f"{kind} dataset of {options.author!r}: {total} rows, below the minimum of {options.min_samples} "
            f"(TWIN_DATASET_MIN_SAMPLES). Steps: {summary}{errors}. Add documents, raise "
            f"TWIN_DATASET_LLM_BUDGET_S, or use a stronger TWIN_LLM_MODEL."
        )


def _write(
    kind: DatasetKind,
    options: BuildOptions,
    splits: dict[str, list[Sample]],
    steps: dict[str, int],
    pii: Counter[str],
    stats: GenerationStats,
    root: Path,
) -> DatasetArtifact:
    to_row = instruction_row if kind == "instruction" else preference_row
    rows = {split: [to_row(s, options.author) for s in splits[split]] for split in SPLITS}
    sources = [
        {
            "split": split,
            "sample_id": s.sample_id,
            "document_id": s.document_id,
            "source_url": s.source_url,
            "category": s.category,
            "origin": s.origin,
        }
        for split in SPLITS
        for s in splits[split]
    ]
    curation_counts = steps | {f"pii_{name}": n for name, n in sorted(pii.items())}
    generation_counts = {
        k: v for k, v in stats.to_dict().items() if k not in {"error_samples", "llm_seconds"}
    }
    recipe = options.recipe(kind)
    card = build_card(
        kind,
        options.author,
        splits,
        options.generation.llm.model,
        curation_counts | {"llm": generation_counts},
        recipe,
    )
    return write_artifact(
        root,
        kind,
        options.author,
        rows,
        card,
        build_readme,
        recipe,
        {SOURCES_FILE: to_jsonl(sources)},
    )


def build_instruction_dataset(
    conn: psycopg.Connection, options: BuildOptions, datasets_root: Path, cache_dir: Path
) -> BuildReport:
    """cleaned_documents of one author -> a curated, versioned instruction dataset whose `test`
    split is the held-out documents' rows."""
    started = time.perf_counter()
    steps: dict[str, int] = {}
    documents = extracts.load_documents(conn, options.author)
    steps["documents"] = len(documents)
    kept = [d for d in documents if not d.language or d.language.split("-")[0] in options.languages]
    steps["dropped_document_language"] = len(documents) - len(kept)
    train_docs, heldout_docs = split_documents(kept, options.heldout_share, options.seed)
    steps["documents_heldout"] = len(heldout_docs)
    if not kept:
        raise DatasetTooSmallError(
            f"no usable documents for author {options.author!r}: {len(documents)} cleaned documents "
            "(materialize cleaned_documents for this author first)"
        )
    generator = _generator(options, cache_dir)
    if options.instructions == "template":
        samples = [s for d in kept for s in template_samples(d, options.section_chars)]
    else:
        samples = _back_translated(generator, heldout_docs, train_docs, options, steps)
    steps["samples"] = len(samples)
    heldout = {d.document_id for d in heldout_docs}
    splits, pii = _curate_common(samples, heldout, options, steps)
    steps["train"], steps["test"] = len(splits["train"]), len(splits["test"])
    _ensure_minimum("instruction", options, splits, steps, generator.stats)
    artifact = _write("instruction", options, splits, steps, pii, generator.stats, datasets_root)
    record_version(conn, artifact, options.generation.llm.model)
    return BuildReport(
        artifact, steps, dict(pii), generator.stats.to_dict(), splits, time.perf_counter() - started
    )


def _back_translated(
    generator: Generator,
    heldout_docs: list[extracts.SourceDocument],
    train_docs: list[extracts.SourceDocument],
    options: BuildOptions,
    steps: dict[str, int],
) -> list[Sample]:
    """The LLM writes the instruction each extract answers, held-out extracts first, then a seeded
    sample of the rest, until the LLM time budget is spent."""

    def cut(docs: list[extracts.SourceDocument]) -> list[extracts.Extract]:
        found = [
            e
            for d in docs
            for e in extracts.cut_extracts(d, options.min_extract_chars, options.max_extract_chars)
        ]
        return extracts.sample_extracts(found, len(found), options.seed)

    ordered = cut(heldout_docs) + cut(train_docs)
    steps["extracts"] = len(ordered)
    deadline = time.monotonic() + options.llm_budget_s
    written = generation.generate_instructions(generator, ordered, options.author, deadline)
    return [
        Sample(e.extract_id, instruction, e.text, e.url, e.category, document_id=e.document_id)
        for e, instruction in written
        if instruction is not None
    ]


def read_samples(artifact: DatasetArtifact) -> dict[str, list[Sample]]:
    """The rows of an instruction dataset back as samples, with their provenance and split."""
    path = artifact.path / SOURCES_FILE
    sources = (
        [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        if path.exists()
        else []
    )
    rows = [(split, row) for split in SPLITS for row in artifact.read_split(split)]
    splits: dict[str, list[Sample]] = {split: [] for split in SPLITS}
    for index, (split, row) in enumerate(rows):
        source = sources[index] if index < len(sources) else {}
        messages = row["messages"]
        splits[split].append(
            Sample(
                document_id=source.get("document_id", ""),
                sample_id=source.get("sample_id", f"{artifact.version}:{index}"),
                instruction=messages[1]["content"],
                answer=messages[2]["content"],
                source_url=source.get("source_url", ""),
                category=source.get("category", ""),
            )
        )
    return splits


def build_preference_dataset(
    conn: psycopg.Connection,
    instructions: DatasetArtifact,
    options: BuildOptions,
    datasets_root: Path,
    cache_dir: Path,
) -> BuildReport:
    """The instruction dataset's prompts and splits -> (prompt, chosen, rejected), plus the approved
    feedback pairs of the author."""
    started = time.perf_counter()
    steps: dict[str, int] = {}
    base = read_samples(instructions)
    steps["instruction_rows"] = sum(len(rows) for rows in base.values())
    generator = _generator(options, cache_dir)
    # Held-out prompts first (evaluation needs them), then a seeded sample of the training ones,
    # while the LLM time budget lasts: the rest are left out, counted, and cost nothing.
    train = sorted(base["train"], key=lambda sample: sample.sample_id)
    random.Random(options.seed).shuffle(train)
    ordered = [("test", s) for s in base["test"]] + [("train", s) for s in train]
    answers = generation.generate_answers(
        generator,
        [s.instruction for _, s in ordered],
        options.author,
        options.rejected_max_tokens,
        deadline=time.monotonic() + options.llm_budget_s,
    )
    splits: dict[str, list[Sample]] = {split: [] for split in SPLITS}
    dropped: Counter[str] = Counter()
    pii: Counter[str] = Counter()
    for (split, sample), answer in zip(ordered, answers, strict=True):
        if answer is None:
            dropped["generation_failed"] += 1
        else:
            splits[split].append(replace(sample, rejected=answer))
    for split in SPLITS:
        pairs, found = curation.scrub_samples(splits[split])
        pii.update(found)
        splits[split], reasons = curation.apply_preference_rules(pairs)
        dropped.update(reasons)
    steps["generated"] = steps["instruction_rows"] - dropped["generation_failed"]
    steps.update({f"dropped_{reason}": n for reason, n in sorted(dropped.items())})

    feedback = load_feedback_pairs(conn, options.author)
    steps["feedback_corrections"] = len(feedback)
    feedback, found = curation.scrub_samples(feedback)
    pii.update(found)
    known = {curation.normalize(s.answer) for rows in splits.values() for s in rows}
    usable = [
        s
        for s in feedback
        if len(s.answer) >= options.min_feedback_chars
        and (s.rejected or "").strip()
        and curation.normalize(s.answer) != curation.normalize(s.rejected or "")
        and curation.normalize(s.answer) not in known
    ]
    steps["dropped_feedback"] = len(feedback) - len(usable)
    splits["train"] = splits["train"] + usable
    splits, steps["dropped_decontamination"] = curation.decontaminate(
        splits, options.decontamination_ngram
    )
    steps["train"], steps["test"] = len(splits["train"]), len(splits["test"])
    _ensure_minimum("preference", options, splits, steps, generator.stats)
    artifact = _write("preference", options, splits, steps, pii, generator.stats, datasets_root)
    record_version(conn, artifact, options.generation.llm.model)
    return BuildReport(
        artifact, steps, dict(pii), generator.stats.to_dict(), splits, time.perf_counter() - started
    )
