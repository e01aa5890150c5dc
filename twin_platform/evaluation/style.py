"""Style similarity: how close a model's answers sit to the author's own text in embedding space.

Each answer is compared with what the author actually wrote for that prompt (cosine of the feature
pipeline's unit-norm embeddings); the mean over the held-out prompts is the model's score, read
against the base model's score on the same prompts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from twin_platform.features.embedding import Embedder


def style_similarity(
    embedder: Embedder, answers: Sequence[str], references: Sequence[str]
) -> float:
    if not answers:
        return float("nan")
    a = embedder.encode(list(answers))
    r = embedder.encode(list(references))
    return float(np.mean(np.sum(a * r, axis=1)))
