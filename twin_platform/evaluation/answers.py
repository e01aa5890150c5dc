"""Answers of a model to held-out prompts, greedy and batched, timed for tokens per second."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from twin_platform.evaluation.scoring import Messages


@dataclass(frozen=True)
class Answers:
    texts: list[str]
    seconds: float
    new_tokens: int
    batch_size: int

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds else 0.0

    @property
    def seconds_per_answer(self) -> float:
        return self.seconds / len(self.texts) if self.texts else 0.0


def generate_answers(
    scorer: tuple[Any, Any],
    prompts: Sequence[Messages],
    max_new_tokens: int = 64,
    batch_size: int = 8,
) -> Answers:
    """Greedy answers, `batch_size` prompts at a time (left-padded), in the chat template."""
    import torch

    tokenizer, model = scorer
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    texts: list[str] = []
    new_tokens = 0
    started = time.perf_counter()
    for start in range(0, len(prompts), batch_size):
        batch = [list(p) for p in prompts[start : start + batch_size]]
        inputs = tokenizer.apply_chat_template(
            batch, add_generation_prompt=True, return_tensors="pt", padding=True, return_dict=True
        ).to(model.device)
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        generated = output[:, inputs["input_ids"].shape[1] :]
        for row in generated:
            kept = row[row != tokenizer.pad_token_id]
            new_tokens += len(kept)
            texts.append(tokenizer.decode(kept, skip_special_tokens=True).strip())
    return Answers(texts, time.perf_counter() - started, new_tokens, batch_size)
