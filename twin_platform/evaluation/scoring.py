"""Log-likelihoods of answers under a model, in the chat format the twin is trained and served with.

Each row is a conversation whose last turn is the author's text; only that turn's tokens are
scored, given the turns before it rendered by the tokenizer's own chat template. Perplexity and DPO
rewards are both built on these sums.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Scored:
    """Summed negative log-likelihood of an answer and how many of its tokens were scored."""

    nll: float
    tokens: int


def load_scorer(model: str, device: str | None = None) -> tuple[Any, Any]:
    """(tokenizer, model) in eval mode: bf16 on a GPU, fp32 on CPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(model)
    hf_model = AutoModelForCausalLM.from_pretrained(model, dtype=dtype).to(device).eval()
    return tokenizer, hf_model


def encode(
    tokenizer: Any, prompt: Messages, answer: str, max_answer_tokens: int
) -> tuple[list[int], int]:
    """Token ids of prompt + answer, and where the answer starts. The answer is cut to
    `max_answer_tokens`: long documents are scored on their opening."""
    prompt_ids = list(
        tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_dict=True)[
            "input_ids"
        ]
    )
    full = tokenizer.apply_chat_template(
        [*prompt, {"role": "assistant", "content": answer}], return_dict=True
    )["input_ids"]
    answer_ids = list(full)[len(prompt_ids) :][:max_answer_tokens]
    return prompt_ids + answer_ids, len(prompt_ids)


def score_answers(
    tokenizer: Any,
    model: Any,
    rows: Sequence[tuple[Messages, str]],
    max_answer_tokens: int = 512,
) -> list[Scored]:
    """The NLL of each (prompt, answer) pair's answer tokens."""
    import torch

    results = []
    for prompt, answer in rows:
        ids, start = encode(tokenizer, prompt, answer, max_answer_tokens)
        if len(ids) - start < 1:
            results.append(Scored(0.0, 0))
            continue
        inputs = torch.tensor([ids], device=model.device)
        with torch.inference_mode():
            logits = model(inputs).logits[0, start - 1 : -1].float()
        targets = inputs[0, start:]
        nll = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
        results.append(Scored(float(nll), len(ids) - start))
    return results


def perplexity(scores: Sequence[Scored]) -> float:
    """exp of the mean NLL per scored token, over all rows together."""
    tokens = sum(s.tokens for s in scores)
    return math.exp(sum(s.nll for s in scores) / tokens) if tokens else float("nan")
