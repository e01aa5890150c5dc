"""Serving, per author: `quantized_model` (the promoted model as GGUF files for CPU serving) and
`deployed_endpoint` (the running API switched to it without a restart).

The work is `twin_platform.models.quantization` and `twin_platform.serving`.
"""

from collections.abc import Iterator

import dagster as dg

from assets.partitions import authors
from resources import SettingsResource
from twin_platform.datasets.artifact import DatasetArtifact
from twin_platform.llm.smoke_check import check_gguf
from twin_platform.models.quantization import QuantizedModel, quantize_model
from twin_platform.prompts import chat_messages
from twin_platform.registry import ModelRegistry, ModelVersion
from twin_platform.reporting import markdown_table
from twin_platform.servers.supervisor import api_url
from twin_platform.serving.adapters import AdapterError, serving_adapter
from twin_platform.serving.deployments import Deployment, DeploymentStore
from twin_platform.serving.endpoint import deploy
from twin_platform.settings import Settings

# llama.cpp's own table on Llama-3-8B: Q8_0 +0.003 and Q4_K_M +0.18 perplexity; a small model loses
# more, so the bounds are shares: a file past its bound is not deployed.
MAX_INCREASE = {"Q8_0": 0.02, "Q4_K_M": 0.08}


@dg.asset(
    group_name="serving",
    partitions_def=authors,
    kinds={"gguf", "llama.cpp"},
    check_specs=[
        dg.AssetCheckSpec(
            f"{kind.lower()}_perplexity_within_{round(bound * 100)}pct",
            asset="quantized_model",
            blocking=True,
            description=f"{kind}'s held-out perplexity is at most {bound:.0%} above the"
            " unquantized model's.",
        )
        for kind, bound in MAX_INCREASE.items()
    ]
    + [
        dg.AssetCheckSpec(
            "serves_in_llama_cpp",
            asset="quantized_model",
            blocking=True,
            description="The file deployments use (TWIN_SERVE_QUANTIZATION) loads and answers a"
            " long chat prompt in llama.cpp, tried in a child process.",
        )
    ],
)
def quantized_model(
    context: dg.AssetExecutionContext,
    settings: SettingsResource,
    production_model: ModelVersion,
    instruction_dataset: DatasetArtifact,
) -> Iterator[dg.Output[QuantizedModel] | dg.AssetCheckResult]:
    """The production model (LoRA merged) as GGUF f16, Q8_0 and Q4_K_M through llama.cpp's converter
    and quantizer, each scored on the evaluation's held-out rows and timed, with a model card."""
    s = settings.settings
    author = context.partition_key
    rows = [
        (chat_messages(row["messages"][1]["content"], author), row["messages"][-1]["content"])
        for row in instruction_dataset.read_split("test")
    ]
    version = production_model
    result = quantize_model(
        version.path,
        f"{version.name}:{version.version}",
        s.quantized_dir / version.name / f"v{version.version}",
        rows,
        version.manifest.get("lineage", {}),
        threads=s.llm_threads,
    )
    table = [
        {
            "file": f.path.name,
            "MB": round(f.bytes / 1e6, 1),
            "perplexity": round(f.score.perplexity, 3),
            "increase": f"{f.increase(result.unquantized_perplexity):+.2%}",
            "prefill tok/s": round(f.score.prefill_tokens_per_second),
            "decode tok/s": round(f.score.decode_tokens_per_second, 1),
        }
        for f in result.files.values()
    ]
    metadata: dict[str, dg.RawMetadataValue] = {
        "model": result.model,
        "folder": dg.MetadataValue.path(str(result.folder)),
        "unquantized_perplexity": round(result.unquantized_perplexity, 3),
        "files": dg.MetadataValue.md(markdown_table(table)),
        "model_card": dg.MetadataValue.path(str(result.folder / "README.md")),
        "seconds": round(result.seconds, 1),
    }
    for kind, item in result.files.items():
        metadata[f"{kind}/perplexity"] = round(item.score.perplexity, 3)
        metadata[f"{kind}/megabytes"] = round(item.bytes / 1e6, 1)
        metadata[f"{kind}/decode_tokens_per_second"] = round(item.score.decode_tokens_per_second, 1)
    yield dg.Output(result, metadata=metadata)
    for kind, bound in MAX_INCREASE.items():
        increase = result.files[kind].increase(result.unquantized_perplexity)
        yield dg.AssetCheckResult(
            check_name=f"{kind.lower()}_perplexity_within_{round(bound * 100)}pct",
            passed=increase <= bound,
            metadata={"increase": round(increase, 4), "bound": bound},
        )
    served = result.file(s.serve_quantization)
    problem = check_gguf(str(served), threads=s.llm_threads)
    yield dg.AssetCheckResult(
        check_name="serves_in_llama_cpp",
        passed=problem is None,
        metadata={"file": dg.MetadataValue.path(str(served)), "problem": problem or ""},
    )


def _serving_adapter(
    context: dg.AssetExecutionContext, settings: Settings, version: ModelVersion
) -> str | None:
    """The version's LoRA adapter on the base model, which a vLLM server (TWIN_SERVE_BACKEND=vllm) or
    the API's adapter bank on a GPU (TWIN_SERVE_ADAPTERS) loads; None for a full fine-tune, which is
    served from its merged folder all the same."""
    registry = ModelRegistry.from_settings(settings)
    try:
        return str(serving_adapter(version, registry, settings.serving_adapters_dir))
    except AdapterError as exc:
        context.log.warning(
            "%s:%s has no adapter to serve on the base model: %s",
            version.name,
            version.version,
            exc,
        )
        return None


@dg.asset(
    group_name="serving",
    partitions_def=authors,
    kinds={"fastapi"},
)
def deployed_endpoint(
    context: dg.AssetExecutionContext,
    settings: SettingsResource,
    production_model: ModelVersion,
    quantized_model: QuantizedModel,
) -> dg.MaterializeResult:
    """The API serves the author's production model (quantized on CPU, the merged folder on a GPU,
    its LoRA adapter on vLLM): the deployment is recorded, and a running API loads it beside the old
    one, smoke-tests it, switches and drains, without a restart. With no API running, it loads at
    start."""
    s = settings.settings
    author = context.partition_key
    adapter = _serving_adapter(context, s, production_model)
    deployment = Deployment(
        author=author,
        model=production_model.name,
        version=production_model.version,
        gguf=str(quantized_model.file(s.serve_quantization)),
        hf_path=str(production_model.path),
        adapter=adapter,
    )
    keys = s.api_key_list
    # A remote API this process holds no key for (docker compose's runs) watches the records.
    url = None if s.api_url and not keys else s.api_url or api_url(s)
    report = deploy(DeploymentStore(s.deployments_dir), deployment, url, keys[0] if keys else None)
    if url is None:
        status = (
            f"recorded: the API at {s.api_url} switches within {s.serve_deployment_poll_s:g} s"
            if s.api_url
            else "recorded: no API is running; it loads this model at start"
        )
        context.log.info("%s: %s", deployment.label, status)
    metadata: dict[str, dg.RawMetadataValue] = {
        "model": deployment.label,
        "file": dg.MetadataValue.path(deployment.gguf or deployment.hf_path),
        "adapter": dg.MetadataValue.path(adapter) if adapter else "none",
        "status": "serving" if url else status,
        "previous": (report.deployment.previous or {}).get("version"),
    }
    if url is not None:
        metadata |= {
            "url": dg.MetadataValue.url(url),
            "load_seconds": round(report.load_s or 0.0, 2),
            "smoke_latency_seconds": round(report.smoke_s or 0.0, 2),
            "smoke_answer": report.smoke_answer or "",
        }
    return dg.MaterializeResult(metadata=metadata)
