"""The LoRA adapter a vLLM server loads for a registered version: one adapter on the base model.

vLLM applies an adapter to the base model it serves. An SFT version's own adapter (`adapter/` in its
registry folder, saved by `training.runner.save`) is that. A DPO version's adapter was trained on
the SFT version's merged weights, so loaded alone on the base it would drop the SFT step: the chain
is stacked into one adapter of the summed rank, whose update is exactly the sum of theirs,
`s1·B1·A1 + s2·B2·A2 = [s1·B1 s2·B2]·[A1; A2]` (with scale 1: lora_alpha = r).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from twin_platform.fsutil import publishing
from twin_platform.registry import ModelRegistry, ModelVersion, RegistryError

ADAPTER = "adapter"  # in a registered version's folder
CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
_UNSTACKABLE = ("use_dora", "rank_pattern", "alpha_pattern", "modules_to_save")


class AdapterError(ValueError):
    """A version with no LoRA adapter that a server could load on the base model."""


def adapter_base_model(folder: str | Path) -> str | None:
    """The model an adapter applies to (`base_model_name_or_path` of its config)."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("base_model_name_or_path")


def adapter_chain(version: ModelVersion, registry: ModelRegistry) -> list[Path]:
    """The adapters from the base model up to `version`, in training order (SFT's, then DPO's)."""
    chain: list[Path] = []
    current: ModelVersion | None = version
    while current is not None:
        folder = current.path / ADAPTER
        if not (folder / CONFIG).is_file():
            raise AdapterError(
                f"{current.name}:{current.version} has no LoRA adapter (a full fine-tune):"
                " only its merged folder can be served"
            )
        chain.insert(0, folder)
        parent = current.manifest.get("lineage", {}).get("parent")
        current = _parent(registry, parent) if parent else None
    return chain


def _parent(registry: ModelRegistry, parent: dict[str, Any]) -> ModelVersion:
    """The version another was trained on (its manifest's lineage.parent)."""
    try:
        return registry.get(parent["name"], int(parent["version"]))
    except (RegistryError, KeyError) as exc:
        raise AdapterError(
            f"the version it was trained on ({parent}) is not in the registry"
        ) from exc


def serving_adapter(version: ModelVersion, registry: ModelRegistry, folder: Path) -> Path:
    """The adapter to load on the base model for `version`: its own when it was trained on the base,
    else its chain stacked once into `folder/<name>/v<version>` (versions never change)."""
    chain = adapter_chain(version, registry)
    if len(chain) == 1:
        return chain[0]
    target = folder / version.name / f"v{version.version}"
    if not (target / CONFIG).is_file():
        stack_adapters(chain, target)
    return target


def _scale(config: dict[str, Any], folder: Path) -> float:
    """The factor PEFT multiplies an adapter's B·A by."""
    unsupported = [key for key in _UNSTACKABLE if config.get(key)]
    if unsupported:
        raise AdapterError(f"{folder} uses {', '.join(unsupported)}: it cannot be stacked")
    rank, alpha = int(config["r"]), float(config["lora_alpha"])
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def _modules(weights: dict[str, Any], folder: Path) -> set[str]:
    """The adapted modules of one adapter's tensors (`<module>.lora_A.weight`, `.lora_B.weight`)."""
    modules = {key.rsplit(".lora_", 1)[0] for key in weights}
    if set(weights) != {f"{m}.lora_{ab}.weight" for m in modules for ab in "AB"}:
        raise AdapterError(f"{folder} holds tensors other than lora_A/lora_B: it cannot be stacked")
    return modules


def stack_adapters(folders: list[Path], target: Path) -> Path:
    """One adapter equal to `folders` applied in turn, published at `target` by one rename."""
    import torch
    from safetensors.torch import load_file, save_file

    missing = [str(f) for f in folders if not (f / WEIGHTS).is_file()]
    if missing:
        raise AdapterError(f"no {WEIGHTS} in {', '.join(missing)}: it cannot be stacked")
    configs = [json.loads((f / CONFIG).read_text()) for f in folders]
    weights = [load_file(str(f / WEIGHTS)) for f in folders]
    scales = [_scale(config, f) for config, f in zip(configs, folders, strict=True)]
    modules = [_modules(w, f) for w, f in zip(weights, folders, strict=True)]
    if any(m != modules[0] for m in modules):
        raise AdapterError(f"{folders} adapt different modules: they cannot be stacked")
    stacked = {}
    for module in sorted(modules[0]):
        a_key, b_key = f"{module}.lora_A.weight", f"{module}.lora_B.weight"
        dtype = weights[0][a_key].dtype
        stacked[a_key] = torch.cat([w[a_key].float() for w in weights]).to(dtype).contiguous()
        b_parts = [w[b_key].float() * s for w, s in zip(weights, scales, strict=True)]
        stacked[b_key] = torch.cat(b_parts, dim=1).to(dtype).contiguous()
    rank = sum(int(config["r"]) for config in configs)
    config = configs[0] | {"r": rank, "lora_alpha": rank, "use_rslora": False}
    with publishing(target, replace=True) as staging:
        save_file(stacked, str(staging / WEIGHTS), metadata={"format": "pt"})
        (staging / CONFIG).write_text(json.dumps(config, indent=2))
    return target
