"""Which documents no training ever sees: a seeded, stable split of each author's documents.

A document is held out when the hash of (seed, document id) falls under the held-out share. The
rule looks at that document alone, so adding documents never moves an old held-out document into
training, and every process, machine and re-run draws the same line. Datasets put the held-out
documents' rows in their `test` split, decontaminate `train` against them, and evaluation measures
the twin on them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from twin_platform.datasets.extracts import SourceDocument


def is_heldout(document_id: str, share: float, seed: int) -> bool:
    digest = hashlib.sha256(f"{seed}:{document_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def split_documents(
    documents: Iterable[SourceDocument], share: float, seed: int
) -> tuple[list[SourceDocument], list[SourceDocument]]:
    """(train, held-out), each in the given order."""
    train: list[SourceDocument] = []
    heldout: list[SourceDocument] = []
    for document in documents:
        (heldout if is_heldout(document.document_id, share, seed) else train).append(document)
    return train, heldout
