"""The whole asset graph, once, through Dagster, on a tiny model built in code.

Raw documents of a small corpus -> features -> datasets -> SFT -> DPO -> evaluation -> promotion ->
quantization -> deployment,
with the trainers launched through Pipes as in production. The model is a 2-layer Llama with the
real SmolLM2 tokenizer, so every step runs for real in seconds; what this test proves is that the
steps fit together, not that a tiny model writes well.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import dagster as dg
import pytest

from twin_platform.registry import PRODUCTION, ModelRegistry, model_name
from twin_platform.serving.deployments import DeploymentStore
from twin_platform.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
AUTHOR = "tiny-author"


@pytest.fixture
def tiny_platform(
    tmp_path: Path,
    tiny_base: Path,
    postgres_url: str,
    mongodb_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """A sources file naming a folder of twelve of the sample author's articles, and settings that
    make every model the tiny one."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for page in sorted((ROOT / "data/sample/exports/substack/posts").glob("*.html"))[:12]:
        shutil.copy(page, corpus / page.name)
    sources = tmp_path / "authors.yaml"
    sources.write_text(f"authors:\n  - name: {AUTHOR}\n    sources:\n      - path: {corpus}\n")
    for name, value in {
        "TWIN_SOURCES_FILE": sources,
        "TWIN_BASE_MODEL": tiny_base,
        "TWIN_LLM_MODEL": f"twin-local/{tiny_base}",  # the rejected answers of the preference pairs
        "TWIN_DATASET_INSTRUCTIONS": "template",
        "TWIN_DATASET_HELDOUT_SHARE": "0.4",
        "TWIN_DATASET_MIN_SAMPLES": "2",
        "TWIN_EVAL_MIN_HELDOUT_DOCUMENTS": "2",
        "TWIN_EVAL_MARGIN_STYLE": "1.0",  # a random model's style is noise; the rest of the gate holds
    }.items():
        monkeypatch.setenv(name, str(value))
    return sources


def test_every_asset_materializes_from_raw_documents_to_production(tiny_platform: Path) -> None:
    from cli.launch import materialize
    from definitions import defs

    started = time.perf_counter()
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("authors", [AUTHOR])
    outcomes = materialize(defs, "*", instance, partitions=[AUTHOR])
    seconds = time.perf_counter() - started
    failed = [o for o in outcomes if not o.success]
    assert not failed, failed

    materialized = {
        key.to_user_string()
        for key in defs.resolve_asset_graph().get_all_asset_keys()
        if instance.get_latest_materialization_event(key) is not None
    }
    for asset in (
        "raw_articles",
        "cleaned_documents",
        "chunks",
        "embedded_chunks",
        "instruction_dataset",
        "preference_dataset",
        "base_model",
        "sft_model",
        "dpo_model",
        "eval_report",
        "production_model",
        "quantized_model",
        "deployed_endpoint",
    ):
        assert asset in materialized, f"{asset} was not materialized"

    evaluation = instance.get_latest_materialization_event(dg.AssetKey("eval_report"))
    assert evaluation is not None
    metadata = evaluation.asset_materialization.metadata  # type: ignore[union-attr]
    assert metadata["heldout_documents"].value >= 2
    assert metadata["candidate/perplexity"].value < metadata["base/perplexity"].value
    registry = ModelRegistry.from_settings(load_settings())
    production = registry.resolve(model_name(AUTHOR), PRODUCTION)
    assert production is not None and production.manifest["lineage"]["stage"] == "dpo"
    deployment = DeploymentStore(load_settings().deployments_dir).get(AUTHOR)
    assert deployment is not None and deployment.version == production.version
    assert deployment.gguf is not None and Path(deployment.gguf).stat().st_size > 0
    assert seconds < 240, f"the graph took {seconds:.0f} s"
