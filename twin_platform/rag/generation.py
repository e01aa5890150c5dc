"""Prompts for generation, exactly as training formats its examples.

Messages come from `twin_platform.prompts.chat_messages` and are rendered by the model's own chat
template, the same function and template the SFT/DPO datasets go through: no train/serve skew.
"""

from __future__ import annotations

from twin_platform.prompts import chat_messages

Messages = list[dict[str, str]]


def build_messages(
    request: str, author: str | None, context: str | None, history: Messages | None = None
) -> Messages:
    """The training format (system, user with context); earlier turns of a chat go before the last user turn."""
    messages = chat_messages(request, author or "the author", context or None)
    return [messages[0], *(history or []), messages[1]]


def render_prompt(messages: Messages) -> str:
    """A readable copy of the prompt for traces (the model applies its own template)."""
    return "\n\n".join(f"<{m['role']}>\n{m['content']}" for m in messages)
