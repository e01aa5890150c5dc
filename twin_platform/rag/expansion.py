"""Query expansion: search with the original query plus n-1 rewrites, to reach more phrasings.

`keywords` (the default) adds the query's content words alone, which helps the full-text arm and costs
nothing; `llm` asks the chat model for rewrites (the reference's approach: slower, more varied).
"""

from __future__ import annotations

import re
from typing import Any

_STOPWORD_TEXT = """a about above after again all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had has
have having he her here hers herself him himself his how i if in into is it its itself just me more
most my myself no nor not now of off on once only or other our ours out over own please same she
should so some such tell than that the their theirs them themselves then there these they this those
through to too under until up very was we were what when where which while who whom why will with
would write you your yours explain describe say says said"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def keywords(query: str) -> str:
    """The query's content words, in order, without stopwords or punctuation."""
    words = re.findall(r"[\w'-]+", query.lower())
    return " ".join(w for w in words if w not in STOPWORDS and len(w) > 1)


def expand_keywords(query: str, n: int) -> list[str]:
    """Original first, then the keyword form when it differs; at most n queries."""
    queries = [query]
    rewrite = keywords(query)
    if rewrite and rewrite != query.lower().strip() and n > 1:
        queries.append(rewrite)
    return queries[:n]


def expand_llm(query: str, n: int, model: Any) -> list[str]:
    """Original first, then up to n-1 distinct rewrites from the chat model, one per line."""
    if n <= 1:
        return [query]
    messages = [
        {
            "role": "system",
            "content": f"Rewrite the user's question in {n - 1} different ways to search a document "
            "store. One rewrite per line, nothing else.",
        },
        {"role": "user", "content": query},
    ]
    text = model.chat(messages, max_tokens=32 * (n - 1), temperature=0.7).text
    queries = [query]
    for line in text.splitlines():
        line = re.sub(r"^\s*(?:\d+[.)]|[-*])\s*", "", line).strip()
        if line and line.lower() not in {q.lower() for q in queries}:
            queries.append(line)
    return queries[:n]


def expand(query: str, n: int, mode: str = "keywords", model: Any = None) -> list[str]:
    if mode == "llm" and model is not None:
        return expand_llm(query, n, model)
    if mode not in ("keywords", "llm"):
        raise ValueError(f"unknown expansion mode {mode!r}: use keywords or llm")
    return expand_keywords(query, n)
