"""Instructions written from each document's own title, headings and opening, without an LLM.

A tiny model cannot write useful instructions (the bundled 135M one writes noise), while every
document already says what it is: an article has a title and headings, a post opens with its
topic, a repository file has a path. So with the embedded default, every section of every training
document becomes a row: the instruction names what to write, the answer is the author's own text.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import replace

from twin_platform.datasets.curation import Sample
from twin_platform.datasets.extracts import SourceDocument, cut_extracts

HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.MULTILINE)
PLATFORM_NAMES = {"linkedin": "a LinkedIn post", "x": "a post for X", "twitter": "a post for X"}
TOPIC_WORDS = 14


def topic(text: str, words: int = TOPIC_WORDS) -> str:
    """The opening sentence, cut to `words` words: what a post is about, in its own terms."""
    first = re.split(r"(?<=[.!?])\s", " ".join(text.split()), maxsplit=1)[0]
    cut = first.split()[:words]
    return " ".join(cut).rstrip(".!?,;:") + ("…" if len(first.split()) > words else "")


def _sections(document: SourceDocument) -> list[tuple[str | None, str]]:
    """(heading, text) per Markdown section; text before the first heading has none."""
    content = document.content
    bounds = sorted({0, len(content), *(m.start() for m in HEADING.finditer(content))})
    sections = []
    for start, end in itertools.pairwise(bounds):
        text = content[start:end].strip()
        match = HEADING.match(text)
        if text:
            sections.append((match.group(2).strip() if match else None, text))
    return sections


def _instruction(document: SourceDocument, heading: str | None, first: bool, text: str) -> str:
    title = (document.title or "").strip() or None
    if document.category == "posts":
        kind = PLATFORM_NAMES.get(document.platform, "a short post")
        return f"Write {kind} about: {title or topic(text)}"
    if document.category == "repositories":
        name = document.url.rstrip("/").rsplit("/", 1)[-1]
        return (
            f"Write {heading} of your repository {name}."
            if heading
            else f"Describe your repository {name}."
        )
    subject = f'"{title}"' if title else f"on {topic(text)}"
    if first:
        return f"Write an article {'titled ' if title else ''}{subject}."
    if heading:
        return f'Write the section "{heading}" of your article {subject}.'
    return f"Continue your article {subject}."


def template_samples(document: SourceDocument, max_chars: int) -> list[Sample]:
    """Every section of the document as rows of at most about `max_chars` characters."""
    samples: list[Sample] = []
    for heading, text in _sections(document):
        part = replace(document, content=text)
        for extract in cut_extracts(part, min_chars=1, max_chars=max_chars) or []:
            samples.append(
                Sample(
                    sample_id=f"{document.document_id}:{len(samples)}",
                    instruction=_instruction(document, heading, not samples, extract.text),
                    answer=extract.text,
                    source_url=document.url,
                    category=document.category,
                    origin="template",
                    document_id=document.document_id,
                )
            )
    return samples
