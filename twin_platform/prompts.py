"""The one chat format shared by dataset generation, training and serving (no train/serve skew).

Training renders `chat_messages(...)` with the tokenizer's own chat template; the API builds its
prompt with the same function and the same template, adding retrieved context to the user turn.
"""

from __future__ import annotations

SYSTEM_PROMPT = (
    "You are the writing twin of {author}. Write in {author}'s own voice: their tone, vocabulary "
    "and rhythm. Be concrete and direct."
)

CONTEXT_TEMPLATE = (
    "Numbered passages from {author}'s own writing:\n{context}\n\n"
    "Cite the passages you use as [1], [2]; never write a URL.\n\nRequest: {request}"
)


def chat_messages(
    request: str,
    author: str = "the author",
    context: str | None = None,
    answer: str | None = None,
) -> list[dict[str, str]]:
    """Messages in the OpenAI/TRL format; `answer` set gives a training example."""
    user = (
        CONTEXT_TEMPLATE.format(author=author, context=context, request=request)
        if context
        else request
    )
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT.format(author=author)},
        {"role": "user", "content": user},
    ]
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages
