"""Instruction and preference datasets: curation steps, artifacts, checks, the IO manager, and the two
assets materialized end to end on the real Postgres with the real local model through litellm."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from twin_platform.datasets import checks, curation
from twin_platform.datasets.artifact import DatasetArtifact, write_artifact
from twin_platform.datasets.build import instruction_row, preference_row
from twin_platform.datasets.card import build_readme
from twin_platform.datasets.curation import RuleConfig, Sample
from twin_platform.datasets.extracts import SourceDocument, cut_extracts, sample_extracts
from twin_platform.datasets.generation import (
    INSTRUCTION_EXAMPLE,
    BackendUnavailableError,
    Completion,
    GenerationOptions,
    GenerationStats,
    Generator,
    InvalidOutput,
    ResponseCache,
    parse_instruction,
)
from twin_platform.llm.options import LLMOptions

AUTHOR = "test-author"
DATASET_ASSETS = ("instruction_dataset", "preference_dataset")

POSTS = {
    "https://example.com/p99": (
        "For three years I watched a latency graph that said everything was fine. The line was the median, "
        "and it sat at 140 ms like a cat on a warm radiator. Then a customer sent a screen recording: their "
        "dashboard took two seconds to load, every time, all morning. Both numbers were true. That is the "
        "problem with medians. They hide the slowest requests, and the slowest requests come from the "
        "accounts with the most data. Now I alert on the 99th percentile, and I write down why each alert "
        "exists. An alert nobody can explain is an alert nobody will fix at three in the morning."
    ),
    "https://example.com/boring": (
        "Ship the boring thing first. Every time I reached for a queue, a cache and a new database on day "
        "one, I spent the first month debugging the glue instead of learning what users wanted. A single "
        "Postgres table with a status column carried our first ten thousand jobs without complaint. When "
        "it finally hurt, we knew exactly which part hurt, and the fix was small. Boring tools fail in ways "
        "that are already written up. Exotic ones fail in ways that you will be the first to write up, "
        "usually during an outage, usually alone."
    ),
}


def sample(
    sample_id: str, answer: str, instruction: str = "Write a post about latency alerts.", **kw
) -> Sample:
    return Sample(
        sample_id, instruction, answer, f"https://example.com/{sample_id}", "articles", **kw
    )


# Extracts --------------------------------------------------------------------------------------------


def test_extracts_are_sentence_aligned_within_bounds_and_sampled_reproducibly() -> None:
    text = " ".join(POSTS.values()) * 3
    document = SourceDocument(
        "doc1", AUTHOR, "articles", "web", "https://example.com/x", None, text, "en"
    )
    extracts = cut_extracts(document, min_chars=300, max_chars=700)
    assert len(extracts) >= 4
    assert all(300 <= len(e.text) <= 700 * 1.25 for e in extracts)
    assert all(e.text[-1] in ".!?" for e in extracts)
    assert len({e.extract_id for e in extracts}) == len(extracts)
    # Paragraph breaks survive; a heading moves on to open the next extract; a sign-off is dropped.
    post = (
        POSTS["https://example.com/p99"]
        + "\n\nWhat I do now\n\n"
        + POSTS["https://example.com/boring"]
    )
    headed = cut_extracts(
        SourceDocument("doc2", AUTHOR, "articles", "web", "u", None, post + "\n\n— Ada", "en"),
        300,
        len(POSTS["https://example.com/p99"])
        + 20,  # the heading fits, the sentence after it does not
    )
    assert [e.text.startswith("What I do now\n\nShip the boring") for e in headed] == [False, True]
    assert all(e.text[-1] in ".!?" and "— Ada" not in e.text for e in headed)
    picked = sample_extracts(extracts, 3, seed=42)
    assert len(picked) == 3 and picked == sample_extracts(extracts, 3, seed=42)
    assert set(picked) <= set(sample_extracts(extracts, 4, seed=42))  # a larger sample only adds
    assert picked != sample_extracts(extracts, 3, seed=7) or len(extracts) == 3


# Curation --------------------------------------------------------------------------------------------


def test_pii_and_secrets_are_scrubbed_and_counted() -> None:
    text = (
        "Mail me at ada.quill@example.org or call +44 20 7946 0958. "
        "Key sk-proj-abcdefghijklmnopqrstuvwxyz123456 and AKIAIOSFODNN7EXAMPLE, token ghp_"
        + "a"
        * 36
        + ", header Authorization: Bearer abcdefghijklmnopqrstuvwx. password = hunter2hunter2. "
        "The p99 was 140 ms in 2023 for 50,000 rows and version 3.12.1."
    )
    scrubbed, found = curation.scrub_pii(text)
    assert found == {"email": 1, "phone": 1, "api_key": 3, "token": 2}
    for secret in (
        "ada.quill@",
        "7946",
        "sk-proj",
        "AKIA",
        "ghp_",
        "abcdefghijklmnopqrstuvwx",
        "hunter2",
    ):
        assert secret not in scrubbed
    assert "[EMAIL]" in scrubbed and "[PHONE]" in scrubbed and "[SECRET]" in scrubbed
    assert "140 ms in 2023 for 50,000 rows and version 3.12.1" in scrubbed  # numbers are not PII


def test_rule_filters_name_the_rule_each_sample_breaks() -> None:
    good = sample("good", POSTS["https://example.com/p99"])
    samples = [
        good,
        sample("short", "Too short to teach anything."),
        sample(
            "refusal",
            "I'm sorry, but as an AI language model I cannot write that post for you. " * 3,
        ),
        sample(
            "boiler",
            "Thanks for reading! Subscribe to my newsletter for more. Click here to share. " * 3,
        ),
        sample(
            "french",
            "Le système de base de données est rapide et les requêtes sont simples à écrire. " * 3,
        ),
    ]
    kept, dropped = curation.apply_rules(samples, RuleConfig())
    assert kept == [good]
    assert dropped == {"length": 1, "refusal": 1, "boilerplate": 1, "language": 1}


def test_exact_and_near_duplicates_are_removed() -> None:
    text = POSTS["https://example.com/boring"]
    near = text.replace("ten thousand", "twelve thousand")
    samples = [
        sample("a", text),
        sample("b", text.upper()),
        sample("c", near),
        sample("d", POSTS["https://example.com/p99"]),
    ]
    kept, exact = curation.drop_exact_duplicates(samples)
    assert exact == 1 and [s.sample_id for s in kept] == ["a", "c", "d"]
    kept, near_count = curation.drop_near_duplicates(kept, threshold=0.8)
    assert near_count == 1 and [s.sample_id for s in kept] == ["a", "d"]


def test_split_follows_heldout_documents_and_decontamination_removes_overlapping_train_rows() -> (
    None
):
    from dataclasses import replace

    from twin_platform.datasets.holdout import is_heldout

    base = [
        replace(
            sample(f"s{i}", f"Sentence number {i} is unique. " * 5, instruction=f"Question {i}?"),
            document_id=f"doc{i}",
        )
        for i in range(20)
    ]
    splits = {
        "train": [s for s in base if not is_heldout(s.document_id, 0.3, seed=42)],
        "test": [s for s in base if is_heldout(s.document_id, 0.3, seed=42)],
    }
    assert splits["test"] and splits["train"]
    # A train row quoting 13+ words of a test row leaks; so does a repeated instruction.
    test_row = splits["test"][0]
    leaking = sample("leak", "Intro. " + test_row.answer, instruction="Something else entirely?")
    same_question = sample(
        "same-q", "Completely different words here. " * 5, instruction=test_row.instruction
    )
    splits["train"] += [leaking, same_question]
    cleaned, dropped = curation.decontaminate(splits, n=13)
    assert dropped == 2 and curation.leaking_rows(cleaned["train"], cleaned["test"], 13) == []


def test_preference_rules_keep_the_references_and_check_the_rejected_side() -> None:
    chosen = POSTS["https://example.com/p99"]
    cases = {
        "ok": (
            chosen,
            "Latency is important; you should monitor several percentiles and set alerts.",
        ),
        "chosen_too_short": ("Short answer.", "A generated answer of reasonable length here."),
        "chosen_not_capitalised": (
            "for three" + chosen[17:],
            "A generated answer of reasonable length.",
        ),
        "chosen_unfinished": (
            chosen.rstrip(".") + " and",
            "A generated answer of reasonable length.",
        ),
        "rejected_too_short": (chosen, "Ok."),
        "rejected_refusal": (chosen, "I'm sorry, I cannot help with that request today."),
        "rejected_copies_chosen": (chosen, chosen[:-40]),
    }
    for expected, (answer, rejected) in cases.items():
        reason = curation.preference_violation(sample("x", answer, rejected=rejected))
        assert reason == (None if expected == "ok" else expected), expected


# Generation: parsing, cache, failures ---------------------------------------------------------------


def completion(text: str, finish: str = "stop") -> Completion:
    return Completion(
        text=text, model="m", prompt_tokens=1, completion_tokens=1, finish_reason=finish
    )


def test_instruction_parsing_tolerates_chatter_and_rejects_bad_answers() -> None:
    passage = POSTS["https://example.com/boring"]
    good = (
        'Sure! ```json\n{"instruction": "Why should a new project start with boring tools?"}\n```'
    )
    assert (
        parse_instruction(completion(good), passage)
        == "Why should a new project start with boring tools?"
    )
    for text, reason in [
        ('{"instruction": "Why should', "malformed_json"),
        ("no json here", "malformed_json"),
        ('{"question": "x"}', "malformed_json"),
        ('{"instruction": ""}', "empty"),
        ('{"instruction": "I\'m sorry, I cannot help with that."}', "refusals"),
        ('{"instruction": "This passage is the perfect answer to the question."}', "invalid"),
        (INSTRUCTION_EXAMPLE[1], "invalid"),
        (
            '{"instruction": "Ship the boring thing first. Every time I reached for a queue"}',
            "invalid",
        ),
    ]:
        with pytest.raises(InvalidOutput) as caught:
            parse_instruction(completion(text), passage)
        assert caught.value.reason == reason, text


def test_a_backend_that_is_down_is_retried_counted_then_reported(
    tmp_path: Path, monkeypatch
) -> None:
    from twin_platform.servers.process import free_port

    options = GenerationOptions(
        LLMOptions(
            model="openai/gpt-4o-mini", api_base=f"http://127.0.0.1:{free_port()}/v1", timeout_s=5
        ),
        max_retries=1,
    )
    generator = Generator(options, ResponseCache(tmp_path))
    messages = [{"role": "user", "content": "hi"}]
    assert generator.generate(messages, lambda c: c.text, max_tokens=8) is None
    stats = generator.stats
    assert (stats.requests, stats.errors, stats.retries, stats.failed, stats.llm_calls) == (
        1,
        2,
        1,
        1,
        0,
    )
    assert stats.error_samples and not list(tmp_path.rglob("*.json"))  # failures are not cached
    with pytest.raises(BackendUnavailableError, match="TWIN_LLM_MODEL"):
        for _ in range(3):
            generator.generate(messages, lambda c: c.text, max_tokens=8)
    errors = generator.stats.errors
    with pytest.raises(BackendUnavailableError):  # once judged down, later requests fail fast
        generator.generate(messages, lambda c: c.text, max_tokens=8)
    assert generator.stats.errors == errors


def test_responses_are_cached_by_request_hash(tmp_path: Path, twin_home: Path) -> None:
    """Real calls to the local model: malformed JSON is counted and retried; a second run pays nothing."""
    options = GenerationOptions(LLMOptions(model="twin-local/smollm2"), max_retries=1)
    messages = [{"role": "user", "content": "Say one word."}]

    def run() -> GenerationStats:
        generator = Generator(options, ResponseCache(tmp_path))
        # No schema and a prompt that asks for no JSON: the answer cannot parse.
        assert (
            generator.generate(messages, lambda c: parse_instruction(c, ""), max_tokens=6) is None
        )
        return generator.stats

    first, second = run(), run()
    assert first.llm_calls == 2 and first.malformed_json == 2 and first.cache_hits == 0
    assert second.llm_calls == 0 and second.cache_hits == 2 and second.malformed_json == 2
    assert len(list(tmp_path.rglob("*.json"))) == 2


# Artifacts, checks, IO manager ----------------------------------------------------------------------


def make_artifact(
    root: Path, splits: dict[str, list[Sample]], kind: str = "instruction"
) -> DatasetArtifact:
    to_row = instruction_row if kind == "instruction" else preference_row
    rows = {split: [to_row(s, AUTHOR) for s in samples] for split, samples in splits.items()}
    card = {
        "counts": {k: len(v) for k, v in rows.items()},
        "lengths_chars": {},
        "curation": {},
        "sources": {"documents": 1, "by_category": {}},
        "generator_model": "m",
    }
    return write_artifact(root, kind, AUTHOR, rows, card, build_readme, {"recipe": 1})  # type: ignore[arg-type]


def test_artifact_is_versioned_by_content_and_readable_by_trl_tools(tmp_path: Path) -> None:
    splits = {
        "train": [sample("a", POSTS["https://example.com/p99"], instruction="Why alert on p99?")],
        "test": [sample("b", POSTS["https://example.com/boring"], instruction="Why start boring?")],
    }
    artifact = make_artifact(tmp_path, splits)
    assert sorted(p.name for p in artifact.path.iterdir()) == [
        "README.md",
        "card.json",
        "test.jsonl",
        "test.parquet",
        "train.jsonl",
        "train.parquet",
    ]
    assert make_artifact(tmp_path, splits) == artifact  # same content, same version, no rewrite
    changed = make_artifact(tmp_path, {"train": splits["test"], "test": splits["train"]})
    assert changed.version != artifact.version
    row = artifact.read_split("train")[0]
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
    assert row["messages"][2]["content"] == POSTS["https://example.com/p99"]
    assert pl.read_parquet(artifact.split_path("train", "parquet"))["messages"].to_list() == [
        row["messages"]
    ]
    assert (
        artifact.card()["version"] == artifact.version
        and DatasetArtifact.from_folder(artifact.path) == artifact
    )
    assert "split: train" in (artifact.path / "README.md").read_text()
    for outcome in (
        checks.check_schema(artifact),
        checks.check_no_empty_fields(artifact),
        checks.check_no_leakage(artifact, 13),
        checks.check_min_samples(artifact, 2),
    ):
        assert outcome.passed, outcome.description
    assert not checks.check_min_samples(artifact, 3).passed


def test_checks_catch_leakage_empty_fields_and_bad_schema(tmp_path: Path) -> None:
    text = POSTS["https://example.com/p99"]
    leaky = make_artifact(
        tmp_path,
        {
            "train": [sample("a", text)],
            "test": [sample("b", "Prefix. " + text, instruction="Other?")],
        },
    )
    assert not checks.check_no_leakage(leaky, 13).passed
    empty = make_artifact(
        tmp_path, {"train": [sample("a", text, rejected="")], "test": []}, kind="preference"
    )
    assert not checks.check_no_empty_fields(empty).passed
    (empty.path / "test.jsonl").write_text(
        json.dumps({"prompt": [{"role": "user", "content": "x"}]}) + "\n"
    )
    assert not checks.check_schema(empty).passed


def test_io_manager_keys_files_by_partition_and_copies_foreign_artifacts(tmp_path: Path) -> None:
    from resources.io_managers import DatasetIOManager

    elsewhere = make_artifact(
        tmp_path / "elsewhere",
        {"train": [sample("a", POSTS["https://example.com/p99"])], "test": []},
    )
    manager = DatasetIOManager(base_dir=str(tmp_path / "store"))
    key = dg.AssetKey("instruction_dataset")
    partitions = dg.StaticPartitionsDefinition([AUTHOR, "other-author"])
    for partition in (AUTHOR, "other-author"):
        context = dg.build_output_context(asset_key=key, partition_key=partition)
        manager.handle_output(context, elsewhere)
        assert (tmp_path / "store" / "instruction_dataset" / f"{partition}.json").exists()
    loaded = manager.load_input(
        dg.build_input_context(asset_key=key, partition_key=AUTHOR, asset_partitions_def=partitions)
    )
    assert loaded.version == elsewhere.version and loaded.path.is_relative_to(tmp_path / "store")
    assert AUTHOR in loaded.path.parts and loaded.read_split("train") == elsewhere.read_split(
        "train"
    )
    with pytest.raises(dg.Failure, match="not safe"):
        manager.handle_output(
            dg.build_output_context(asset_key=key, partition_key="../x"), elsewhere
        )


def test_io_manager_round_trips_through_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against moto's S3 server over real HTTP (no AWS here): upload, pointer per partition, download."""
    moto_server = pytest.importorskip("moto.server")
    import boto3

    from resources.io_managers import DatasetIOManager
    from twin_platform.servers.process import free_port

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="twin")
        artifact = make_artifact(
            tmp_path / "local",
            {"train": [sample("a", POSTS["https://example.com/p99"])], "test": []},
        )
        manager = DatasetIOManager(
            base_dir=str(tmp_path / "cache"), s3_bucket="twin", s3_endpoint_url=endpoint
        )
        key = dg.AssetKey("preference_dataset")
        manager.handle_output(
            dg.build_output_context(asset_key=key, partition_key=AUTHOR), artifact
        )
        listing = boto3.client("s3", endpoint_url=endpoint).list_objects_v2(Bucket="twin")[
            "Contents"
        ]
        keys = {item["Key"] for item in listing}
        prefix = f"twin-platform/datasets/preference_dataset/{AUTHOR}"
        assert f"{prefix}.json" in keys and f"{prefix}/{artifact.version}/train.parquet" in keys
        loaded = manager.load_input(
            dg.build_input_context(
                asset_key=key,
                partition_key=AUTHOR,
                asset_partitions_def=dg.StaticPartitionsDefinition([AUTHOR]),
            )
        )
        assert loaded.version == artifact.version and loaded.path != artifact.path
        assert (
            loaded.read_split("train") == artifact.read_split("train")
            and loaded.card() == artifact.card()
        )
    finally:
        server.stop()


# The assets, end to end -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def author_documents(postgres_url: str) -> str:
    """The author's cleaned snapshot, plus two traces with user corrections (the API's feedback):
    one a reviewer approved, one still pending review (which no dataset may read)."""
    from twin_platform.storage.postgres import connect

    with connect(postgres_url) as conn:
        for url, content in POSTS.items():
            conn.execute(
                "INSERT INTO cleaned_documents (document_id, author, category, platform, url, title, content,"
                " content_hash, language) VALUES (%s, %s, 'articles', 'web', %s, NULL, %s, %s, 'en')"
                " ON CONFLICT (document_id) DO NOTHING",
                (
                    hashlib.sha256(url.encode()).hexdigest(),
                    AUTHOR,
                    url,
                    content,
                    hashlib.sha256(content.encode()).hexdigest(),
                ),
            )
        corrections = {
            "approved": "I alert on p99, never the average, and I write down why each alert"
            " exists. Mail ada@example.org.",
            "pending": "Averages hide the slow requests: I never alert on them, whatever the"
            " dashboard says.",
        }
        for status, correction in corrections.items():
            trace_id = uuid.uuid4()
            conn.execute(
                "INSERT INTO traces (trace_id, route, query, author, answer)"
                " VALUES (%s, '/rag', %s, %s, %s)",
                (trace_id, "How do you pick alert thresholds?", AUTHOR, "Use averages, fine."),
            )
            conn.execute(
                "INSERT INTO feedback (trace_id, rating, correction, author, status)"
                " VALUES (%s, -1, %s, %s, %s)",
                (trace_id, correction, AUTHOR, status),
            )
    return AUTHOR


def materialize(instance: dg.DagsterInstance, **config: object) -> dg.ExecuteInProcessResult:
    from assets.datasets import instruction_dataset, preference_dataset
    from resources import PostgresResource, SettingsResource
    from resources.io_managers import DatasetIOManager

    run_config = {"ops": {name: {"config": config} for name in DATASET_ASSETS}}
    return dg.materialize(
        [instruction_dataset, preference_dataset],
        partition_key=AUTHOR,
        instance=instance,
        resources={
            "settings": SettingsResource(),
            "postgres": PostgresResource(),
            "dataset_io_manager": DatasetIOManager(),
        },
        run_config=run_config,
        raise_on_error=False,
    )


def test_dataset_assets_end_to_end_with_the_local_model(
    author_documents: str, twin_home: Path, monkeypatch
) -> None:
    monkeypatch.setenv("TWIN_LLM_MAX_RETRIES", "2")
    monkeypatch.setenv("TWIN_DATASET_ANSWER_MAX_TOKENS", "24")
    # Back-translation: the path a capable model takes.
    monkeypatch.setenv("TWIN_DATASET_INSTRUCTIONS", "llm")
    monkeypatch.setenv("TWIN_DATASET_LLM_BUDGET_S", "6")  # a few calls per stage, then stop
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("authors", [AUTHOR])
    result = materialize(instance, min_samples=1)
    assert result.success, [e.message for e in result.all_events if e.is_failure]

    meta = {
        name: result.asset_materializations_for_node(name)[0].metadata for name in DATASET_ASSETS
    }
    instruction, preference = meta["instruction_dataset"], meta["preference_dataset"]
    steps = {k: v.value for k, v in instruction.items() if k.startswith(("curation/", "llm/"))}
    assert steps["curation/documents"] == 2 and steps["curation/extracts"] >= 2
    assert steps["llm/requests"] >= 1  # the budget ran out after the first calls
    assert steps["llm/requests"] + steps["llm/over_budget"] == steps["curation/extracts"]
    assert steps["llm/llm_calls"] == steps["llm/requests"] + steps["llm/retries"]
    assert steps["curation/samples"] + steps["llm/failed"] == steps["llm/requests"]
    assert instruction["dagster/row_count"].value >= 1 and "base64" in instruction["lengths"].value
    assert preference["curation/feedback_corrections"].value == 1

    checks_run = {
        (c.asset_key.to_user_string(), c.check_name): c.passed
        for c in result.get_asset_check_evaluations()
    }
    assert len(checks_run) == 8 and all(checks_run.values()), checks_run

    artifact = result.output_for_node("preference_dataset")
    assert isinstance(artifact, DatasetArtifact) and artifact.version == preference["version"].value
    assert AUTHOR in artifact.path.parts
    rows = artifact.read_split("train") + artifact.read_split("test")
    feedback_rows = [
        r for r in rows if r["prompt"][1]["content"] == "How do you pick alert thresholds?"
    ]
    assert len(feedback_rows) == 1 and "[EMAIL]" in feedback_rows[0]["chosen"][0]["content"]
    assert all(r["chosen"][0]["content"] != r["rejected"][0]["content"] for r in rows)

    # Re-materializing replays every LLM answer from the cache: same version, no new call.
    again = materialize(instance, min_samples=1)
    assert again.success
    for name in DATASET_ASSETS:
        replayed = again.asset_materializations_for_node(name)[0].metadata
        assert replayed["version"].value == meta[name]["version"].value
        assert replayed["llm/llm_calls"].value == 0 and replayed["llm/cache_hits"].value > 0

    # Below the minimum the run fails with a clear message instead of writing a tiny dataset.
    failed = materialize(instance, min_samples=1000)
    assert not failed.success
    failure = failed.failure_data_for_node("instruction_dataset")
    assert failure is not None and failure.user_failure_data is not None
    assert "below the minimum of 1000" in str(failure.user_failure_data.description)
