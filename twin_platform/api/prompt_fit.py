"""Every request the schema allows gets an answer: a conversation longer than the model's context is
shortened, not refused with a server error.

The schema bounds characters (a JSON Schema cannot count tokens); the served model bounds tokens.
When the prompt and the answer would not fit, the oldest earlier turns go first, then the start of
the last user message (retrieved passages come before the request in it, so the request is kept).
"""

from __future__ import annotations

from collections.abc import Callable

from twin_platform.api.tracing import record_persona
from twin_platform.monitoring import Trace
from twin_platform.rag.generation import Messages, render_prompt
from twin_platform.rag.pipeline import Answering
from twin_platform.settings import Settings

Counter = Callable[[str], int]
TEMPLATE_TOKENS_PER_MESSAGE = 8  # role markers and separators of a chat template
SAFETY_TOKENS = 32  # a counted prompt and the template's own tokenization may differ slightly


def _prompt_tokens(messages: Messages, count: Counter) -> int:
    return sum(count(m["content"]) + TEMPLATE_TOKENS_PER_MESSAGE for m in messages)


def _keep_end(text: str, budget: int, count: Counter) -> str:
    """The longest end of `text` within `budget` tokens (binary search on characters)."""
    low, high = 0, len(text)
    while low < high:
        middle = (low + high) // 2
        if count(text[middle:]) <= budget:
            high = middle
        else:
            low = middle + 1
    return text[low:]


def fit_prompt(answering: Answering, trace: Trace, max_new_tokens: int) -> bool:
    """Shorten `answering.messages` in place until the prompt and `max_new_tokens` fit the model's
    context; True if anything was cut (the trace's prompt then shows what was sent)."""
    model = answering.lease.model
    count = model.count_tokens
    budget = model.n_ctx - max_new_tokens - SAFETY_TOKENS
    messages = answering.messages
    if _prompt_tokens(messages, count) <= budget:
        return False
    while len(messages) > 2 and _prompt_tokens(messages, count) > budget:
        del messages[1]  # the oldest earlier turn (the system prompt stays first)
    over = _prompt_tokens(messages, count) - budget
    if over > 0:
        last = messages[-1]
        keep = max(0, count(last["content"]) - over)
        last["content"] = _keep_end(last["content"], keep, count)
    trace.prompt = render_prompt(messages)
    return True


def prepare(
    answering: Answering, trace: Trace, max_tokens: int | None, settings: Settings
) -> Answering:
    """What every answering route does between `begin` and generation: the trace records whose
    voice answers, and the prompt fits the model. A failure here still releases the model."""
    try:
        record_persona(trace, answering, settings)
        fit_prompt(answering, trace, max_tokens or settings.gen_max_tokens)
    except BaseException:
        answering.close()
        raise
    return answering
