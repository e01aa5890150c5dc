"""Curation: every step takes samples and returns the kept ones plus a count of what it removed.

Order in a build: rule filters -> PII scrubbing -> exact duplicates -> near duplicates (MinHash LSH)
-> seeded train/test split -> decontamination (no train row shares a word n-gram with the test split).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from twin_platform.features.pii import scrub_pii, scrub_texts  # noqa: F401 - the one scrubber

_COMMON_ENGLISH = (
    "the a an and or but of to in on for with is are was were be been it this that as at by from you i we "
    "they he she not have has had do does did can will would should so if what which how my your our their "
    "its there than then about into more most just also"
)
ENGLISH_STOPWORDS = frozenset(_COMMON_ENGLISH.split())
BOILERPLATE = re.compile(
    r"\b(subscribe( to)?( my| our)? (newsletter|channel)|sign up (for|to)|all rights reserved|cookie policy"
    r"|privacy policy|click here|follow me on|share this (post|article)|read more|terms of service"
    r"|thanks for reading|leave a comment|skip to (main )?content)\b",
    re.IGNORECASE,
)
REFUSAL = re.compile(
    r"\b(as an ai|i('m| am) sorry|i can(no|')t (help|assist|provide|do that)|i('m| am) (not able|unable) to"
    r"|i do(n't| not) have (access|the ability)|language model)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Sample:
    """One training example before formatting: `answer` is the author's text (chosen side)."""

    sample_id: str
    instruction: str
    answer: str
    source_url: str
    category: str
    rejected: str | None = None
    origin: str = "extract"  # or "template", "feedback"
    document_id: str = ""


@dataclass(frozen=True)
class RuleConfig:
    min_answer_chars: int = 40
    max_answer_chars: int = 4000
    min_english_share: float = 0.08  # share of common English words; skipped for code
    max_symbol_share: float = 0.35  # non-letter, non-space characters: tables, link lists, markup


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def words(text: str) -> list[str]:
    return normalize(text).split()


def english_share(text: str) -> float:
    tokens = words(text)
    return sum(t in ENGLISH_STOPWORDS for t in tokens) / max(len(tokens), 1)


def rule_violation(sample: Sample, rules: RuleConfig) -> str | None:
    """The first rule `sample` breaks, or None."""
    answer = sample.answer
    if (
        not (rules.min_answer_chars <= len(answer) <= rules.max_answer_chars)
        or len(words(sample.instruction)) < 3
    ):
        return "length"
    if REFUSAL.search(sample.instruction) or REFUSAL.search(answer[:300]):
        return "refusal"
    if len(BOILERPLATE.findall(answer)) >= 2 or BOILERPLATE.fullmatch(answer.strip(" .!")):
        return "boilerplate"
    symbols = sum(not (c.isalpha() or c.isspace()) for c in answer) / len(answer)
    if sample.category != "repositories":
        if symbols > rules.max_symbol_share:
            return "boilerplate"
        if english_share(answer) < rules.min_english_share:
            return "language"
    return None


def apply_rules(samples: Iterable[Sample], rules: RuleConfig) -> tuple[list[Sample], Counter[str]]:
    kept, dropped = [], Counter[str]()
    for sample in samples:
        reason = rule_violation(sample, rules)
        if reason:
            dropped[reason] += 1
        else:
            kept.append(sample)
    return kept, dropped


def scrub_samples(samples: Iterable[Sample]) -> tuple[list[Sample], Counter[str]]:
    """Every text field of every sample through the one scrubber cleaning uses (detect-secrets)."""
    samples = list(samples)
    fields = [
        (index, name, value)
        for index, sample in enumerate(samples)
        for name in ("instruction", "answer", "rejected")
        if (value := getattr(sample, name)) is not None
    ]
    found = Counter[str]()
    changes: dict[int, dict[str, str]] = {}
    for (index, name, _), (text, counts) in zip(
        fields, scrub_texts(value for _, _, value in fields), strict=True
    ):
        changes.setdefault(index, {})[name] = text
        found.update(counts)
    return [replace(sample, **changes.get(i, {})) for i, sample in enumerate(samples)], found


def drop_exact_duplicates(samples: list[Sample]) -> tuple[list[Sample], int]:
    """Samples whose answer is the same after normalisation: the first one is kept."""
    seen: set[str] = set()
    kept = []
    for sample in samples:
        key = hashlib.sha256(normalize(sample.answer).encode()).hexdigest()
        if key not in seen:
            seen.add(key)
            kept.append(sample)
    return kept, len(samples) - len(kept)


def shingles(text: str, n: int = 5) -> set[str]:
    tokens = words(text)
    return {" ".join(tokens[i : i + n]) for i in range(max(len(tokens) - n + 1, 1))}


def minhash(text: str, num_perm: int = 128) -> Any:
    from datasketch import MinHash

    signature = MinHash(num_perm=num_perm, seed=1)
    signature.update_batch([s.encode() for s in shingles(text)])
    return signature


def drop_near_duplicates(samples: list[Sample], threshold: float = 0.8) -> tuple[list[Sample], int]:
    """MinHash LSH over word 5-gram shingles of the answers; the first of each near-duplicate group is kept.

    The LSH bands favour recall (few missed pairs); each candidate is then confirmed by its estimated
    Jaccard similarity, so precision does not suffer.
    """
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=128, weights=(0.1, 0.9))
    signatures: dict[str, Any] = {}
    kept = []
    for sample in samples:
        signature = minhash(sample.answer)
        if any(signature.jaccard(signatures[key]) >= threshold for key in lsh.query(signature)):
            continue
        lsh.insert(sample.sample_id, signature)
        signatures[sample.sample_id] = signature
        kept.append(sample)
    return kept, len(samples) - len(kept)


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    tokens = words(text)
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def sample_text(sample: Sample) -> str:
    return f"{sample.instruction}\n{sample.answer}"


def leaking_rows(train: list[Sample], test: list[Sample], n: int) -> list[Sample]:
    """Train samples sharing a word n-gram with any test sample (or an identical instruction)."""
    test_grams: set[tuple[str, ...]] = set()
    for sample in test:
        test_grams |= ngrams(sample_text(sample), n)
    test_instructions = {normalize(s.instruction) for s in test}
    return [
        s
        for s in train
        if normalize(s.instruction) in test_instructions
        or not ngrams(sample_text(s), n).isdisjoint(test_grams)
    ]


def decontaminate(splits: dict[str, list[Sample]], n: int) -> tuple[dict[str, list[Sample]], int]:
    """Drop train rows that overlap the test split, so evaluation measures unseen text."""
    leaking = {s.sample_id for s in leaking_rows(splits["train"], splits["test"], n)}
    train = [s for s in splits["train"] if s.sample_id not in leaking]
    return {"train": train, "test": splits["test"]}, len(leaking)


def preference_violation(sample: Sample) -> str | None:
    """The reference's rules on the chosen side, plus rules on the rejected side."""
    chosen, rejected = sample.answer.strip(), (sample.rejected or "").strip()
    if len(chosen) < 100:
        return "chosen_too_short"
    # The reference's checks read the prose, not its Markdown: "## Heading", "- item", "**Bold**".
    letters = [c for c in chosen if c.isalpha()]
    if not letters or not letters[0].isupper():
        return "chosen_not_capitalised"
    if chosen.rstrip("*_`)\"'").rstrip()[-1:] not in (".", "!", "?"):
        return "chosen_unfinished"
    if len(rejected) < 20:
        return "rejected_too_short"
    if REFUSAL.search(rejected[:200]):
        return "rejected_refusal"
    if normalize(rejected) == normalize(chosen):
        return "rejected_same_as_chosen"
    if (
        len(shingles(rejected) & shingles(chosen))
        / max(len(shingles(rejected) | shingles(chosen)), 1)
        >= 0.5
    ):
        return "rejected_copies_chosen"
    return None


def apply_preference_rules(samples: Iterable[Sample]) -> tuple[list[Sample], Counter[str]]:
    kept, dropped = [], Counter[str]()
    for sample in samples:
        reason = preference_violation(sample)
        if reason:
            dropped[reason] += 1
        else:
            kept.append(sample)
    return kept, dropped
