"""LLM-as-judge through the platform's one LLM interface, with deepeval's metrics.

G-Eval scores accuracy and style (read on the reference's 1-3 scale: 1 + 2 x G-Eval's 0-1 score);
answer relevancy and faithfulness score the RAG answers. The judge is any `ChatModel`; a judge that
times out or returns JSON that does not parse is asked again, then its score is recorded as
missing, never as a number. A tiny judge (the bundled 135M model) gives scores that are labelled
as such and never gate a promotion.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from twin_platform.llm.chat import ChatModel

log = logging.getLogger(__name__)
_JSON = re.compile(r"\{.*\}", re.DOTALL)


class JudgeError(RuntimeError):
    """The judge gave no usable answer after its retries."""


@dataclass(frozen=True)
class JudgeCase:
    prompt: str
    answer: str
    reference: str  # the author's own text for this prompt
    context: list[str] = field(default_factory=list)  # retrieved passages, for RAG answers


@dataclass
class JudgeScores:
    model: str
    tiny: bool  # a judge too small to trust: reported, never gating
    scores: dict[str, float | None]  # metric -> mean over cases; None = every case missing
    missing: dict[str, int]  # metric -> cases without a score


def _judge_class() -> type:
    """Built on first use: deepeval's import costs seconds."""
    from deepeval.models import DeepEvalBaseLLM

    class ChatModelJudge(DeepEvalBaseLLM):
        def __init__(self, model: ChatModel, retries: int) -> None:
            self.chat_model = model
            self.retries = retries
            super().__init__(model.name)

        def load_model(self) -> ChatModel:
            return self.chat_model

        def generate(self, prompt: str, schema: Any = None) -> Any:
            json_schema = schema.model_json_schema() if schema is not None else None
            for attempt in range(self.retries + 1):
                try:
                    result = self.chat_model.chat(
                        [{"role": "user", "content": prompt}],
                        max_tokens=512,
                        temperature=0.0,
                        json_schema=json_schema,
                        seed=attempt,
                    )
                    if schema is None:
                        return result.text
                    match = _JSON.search(result.text)
                    return schema.model_validate(json.loads(match.group(0) if match else ""))
                except Exception as exc:  # timeouts, transport errors, broken JSON: ask again
                    log.warning("judge attempt %d failed: %s", attempt + 1, exc)
            raise JudgeError(f"the judge gave no usable answer in {self.retries + 1} attempts")

        async def a_generate(self, prompt: str, schema: Any = None) -> Any:
            return await asyncio.to_thread(self.generate, prompt, schema)

        def get_model_name(self) -> str:
            return self.chat_model.name

    return ChatModelJudge


def _metrics(judge: Any) -> dict[str, Any]:
    from deepeval.metrics import AnswerRelevancyMetric, FaithfulnessMetric, GEval
    from deepeval.test_case import SingleTurnParams as P

    quiet = {"model": judge, "async_mode": False, "verbose_mode": False}
    return {
        "accuracy": GEval(
            name="Accuracy",
            criteria="Is the actual output consistent with the facts of the expected output, which"
            " the author wrote, without contradicting it or inventing claims?",
            evaluation_params=[P.INPUT, P.ACTUAL_OUTPUT, P.EXPECTED_OUTPUT],
            **quiet,
        ),
        "style": GEval(
            name="Style",
            criteria="Does the actual output read like the author's blog or social posts in the"
            " expected output (tone, vocabulary, rhythm), rather than academic or generic"
            " assistant prose?",
            evaluation_params=[P.INPUT, P.ACTUAL_OUTPUT, P.EXPECTED_OUTPUT],
            **quiet,
        ),
        "answer_relevancy": AnswerRelevancyMetric(**quiet),
        "faithfulness": FaithfulnessMetric(**quiet),
    }


def judge_answers(
    model: ChatModel, cases: Sequence[JudgeCase], tiny: bool, retries: int = 2
) -> JudgeScores:
    """Mean score of each metric over the cases it could score. G-Eval's metrics are reported on
    the 1-3 scale; relevancy and faithfulness stay on 0-1. RAG metrics score cases with context."""
    from deepeval.test_case import LLMTestCase

    judge = _judge_class()(model, retries)
    sums: dict[str, list[float]] = {}
    missing: dict[str, int] = {}
    for name, metric in _metrics(judge).items():
        rag_only = name in ("answer_relevancy", "faithfulness")
        for case in cases:
            if rag_only and not case.context:
                continue
            test_case = LLMTestCase(
                input=case.prompt,
                actual_output=case.answer or "(no answer)",
                expected_output=case.reference,
                retrieval_context=case.context or None,
            )
            try:
                metric.measure(test_case)
                score = float(metric.score)
            except Exception as exc:  # recorded as missing: a failed judge call is not a score
                log.warning("judge metric %s failed on %r: %s", name, case.prompt[:60], exc)
                missing[name] = missing.get(name, 0) + 1
                continue
            sums.setdefault(name, []).append(1 + 2 * score if not rag_only else score)
    scores: dict[str, float | None] = {
        name: (sum(values) / len(values) if (values := sums.get(name)) else None)
        for name in ("accuracy", "style", "answer_relevancy", "faithfulness")
    }
    return JudgeScores(model=model.name, tiny=tiny, scores=scores, missing=missing)
