"""LLM generation for the datasets: prompts with a JSON-schema output, validation, bounded retries.

Every response is cached on disk by the hash of its request (model, messages, parameters, attempt),
so re-materializing replays the same answers for free and a crash loses no paid call. Failures are
counted, never fatal here: malformed JSON and invalid answers are retried up to `max_retries` times,
errors and timeouts too; a backend that fails every one of the first calls stops the run early.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from twin_platform.datasets import curation
from twin_platform.datasets.curation import REFUSAL
from twin_platform.datasets.extracts import Extract
from twin_platform.llm.chat import ChatModel
from twin_platform.llm.factory import open_chat_model
from twin_platform.llm.options import LLMOptions
from twin_platform.prompts import chat_messages

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

INSTRUCTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    # The length bounds let llama.cpp's grammar close the string before max_tokens cuts the JSON.
    "properties": {"instruction": {"type": "string", "minLength": 20, "maxLength": 240}},
    "required": ["instruction"],
    "additionalProperties": False,
}

INSTRUCTION_SYSTEM = (
    "You turn a passage into the request it answers: the instruction someone would give the writer. "
    'Reply with JSON only: {"instruction": "..."}.'
)
INSTRUCTION_USER = 'Passage by {author}:\n"""\n{text}\n"""\nWrite the instruction, 6 to 40 words, that this passage answers.'
# One worked example: small models follow a demonstration far better than a description.
INSTRUCTION_EXAMPLE = (
    "Every team I joined had a dashboard nobody trusted. The numbers were right; the definitions were not "
    "written down, so each reader took them to mean something different. Write the definition next to the "
    "chart, and the arguments stop.",
    '{"instruction": "Write a short post on why teams stop trusting their dashboards and the fix you use."}',
)
META_CHATTER = re.compile(
    r"\b(passage|this text|the text above|the answer|json|instruction)\b", re.IGNORECASE
)
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


class BackendUnavailableError(RuntimeError):
    """The first calls all failed: the LLM backend is down or misconfigured."""


@dataclass(frozen=True)
class GenerationOptions:
    """The chat model to call, and how dataset generation calls it."""

    llm: LLMOptions
    concurrency: int = 2
    max_retries: int = 2
    temperature: float = 0.7
    seed: int = 42


@dataclass(frozen=True)
class Completion:
    """A chat result as the response cache stores it, with the model that gave it."""

    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


@dataclass
class GenerationStats:
    """Counts of what happened to every request; merged into the materialization metadata."""

    requests: int = 0
    llm_calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    malformed_json: int = 0
    invalid: int = 0
    refusals: int = 0
    empty: int = 0
    errors: int = 0
    failed: int = 0  # requests that produced nothing after every attempt
    over_budget: int = 0  # requests not started: the build's LLM time budget was spent
    prompt_tokens: int = 0
    completion_tokens: int = 0
    llm_seconds: float = (
        0.0  # summed over concurrent calls, waits for the local model's lock included
    )
    error_samples: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: float) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "_lock"} | {
                "error_samples": list(self.error_samples)
            }


class ResponseCache:
    """LLM responses on disk, one JSON file per request hash; writes are atomic renames."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @staticmethod
    def key(request: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> Completion | None:
        try:
            return Completion(**json.loads(self._path(key).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None

    def put(self, key: str, completion: Completion) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(asdict(completion), handle)
        os.replace(tmp, path)


class Generator:
    """Calls the chat model of `options` with caching, validation and bounded retries."""

    def __init__(
        self, options: GenerationOptions, cache: ResponseCache, stats: GenerationStats | None = None
    ) -> None:
        self.options = options
        self.cache = cache
        self.stats = stats or GenerationStats()
        self._successes = 0
        self._unavailable: str | None = (
            None  # set once the backend is judged down: later calls fail fast
        )
        self._model: ChatModel | None = None
        self._model_lock = threading.Lock()

    @property
    def model(self) -> ChatModel:
        """Opened by the first call the cache cannot answer: a replayed build loads no model."""
        with self._model_lock:
            if self._model is None:
                self._model = open_chat_model(self.options.llm)
            return self._model

    def call(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        json_schema: dict[str, Any] | None,
        attempt: int,
    ) -> Completion:
        """One cached completion. The attempt number is part of the key: a retry is a new request."""
        seed = self.options.seed + attempt
        request = {
            "model": self.options.llm.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": self.options.temperature,
            "json_schema": json_schema,
            "seed": seed,
        }
        key = self.cache.key(request)
        cached = self.cache.get(key)
        if cached is not None:
            self.stats.add(cache_hits=1)
            return cached
        started = time.perf_counter()
        result = self.model.chat(
            messages,
            max_tokens=max_tokens,
            temperature=self.options.temperature,
            json_schema=json_schema,
            seed=seed,
        )
        completion = Completion(
            result.text,
            self.options.llm.model,
            result.prompt_tokens,
            result.completion_tokens,
            result.finish_reason,
        )
        self.stats.add(
            llm_calls=1,
            llm_seconds=time.perf_counter() - started,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
        )
        self.cache.put(key, completion)
        return completion

    def generate(
        self,
        messages: list[dict[str, str]],
        parse: Callable[[Completion], T],
        *,
        max_tokens: int,
        json_schema: dict[str, Any] | None = None,
    ) -> T | None:
        """`parse` returns the value or raises `InvalidOutput`; None after every attempt failed."""
        if self._unavailable:
            raise BackendUnavailableError(self._unavailable)
        self.stats.add(requests=1)
        for attempt in range(self.options.max_retries + 1):
            if attempt:
                self.stats.add(retries=1)
            try:
                completion = self.call(
                    messages, max_tokens=max_tokens, json_schema=json_schema, attempt=attempt
                )
            except Exception as exc:  # every backend fails in its own exception types
                self._record_error(exc)
                continue
            try:
                value = parse(completion)
            except InvalidOutput as exc:
                self.stats.add(**{exc.reason: 1})
                continue
            self._successes += 1
            return value
        self.stats.add(failed=1)
        return None

    def _record_error(self, exc: Exception) -> None:
        self.stats.add(errors=1)
        message = f"{type(exc).__name__}: {str(exc)[:200]}"
        log.warning("LLM call failed: %s", message)
        with self.stats._lock:
            if len(self.stats.error_samples) < 5:
                self.stats.error_samples.append(message)
        if self._successes == 0 and self.stats.errors >= 3 * (self.options.max_retries + 1):
            self._unavailable = (
                f"the LLM backend {self.options.llm.model!r} failed {self.stats.errors} calls in a row and "
                f"answered none (last: {message}); check TWIN_LLM_MODEL / TWIN_LLM_API_BASE"
            )
            raise BackendUnavailableError(self._unavailable) from exc

    def map(
        self,
        function: Callable[[T], R],
        items: Sequence[T],
        desc: str,
        deadline: float | None = None,
    ) -> list[R | None]:
        """`function` over `items` with at most `concurrency` LLM calls in flight, with a progress bar.

        Items not started by `deadline` (a `time.monotonic()` value) give None and count as
        `over_budget`: a build bounded in time still uses every answer it got.
        """
        from tqdm import tqdm

        def bounded(item: T) -> R | None:
            if deadline is not None and time.monotonic() > deadline:
                self.stats.add(over_budget=1)
                return None
            return function(item)

        pool = ThreadPoolExecutor(max_workers=self.options.concurrency)
        try:
            return list(tqdm(pool.map(bounded, items), total=len(items), desc=desc, mininterval=5))
        finally:  # on an error, queued calls are dropped instead of waiting for their timeouts
            pool.shutdown(wait=True, cancel_futures=True)


class InvalidOutput(ValueError):
    """An answer the LLM gave that cannot be used; `reason` names the counter it increments."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


def parse_json_object(text: str) -> dict[str, Any]:
    """The JSON object in `text`, tolerating code fences and chatter around it."""
    match = _JSON_OBJECT.search(text)
    if match is None:
        raise InvalidOutput("malformed_json", text[:80])
    try:
        value = json.loads(match.group(0))
    except json.JSONDecodeError as exc:
        raise InvalidOutput("malformed_json", str(exc)) from exc
    if not isinstance(value, dict):
        raise InvalidOutput("malformed_json", "not an object")
    return value


def instruction_messages(extract: Extract, author: str) -> list[dict[str, str]]:
    example_passage, example_answer = INSTRUCTION_EXAMPLE
    return [
        {"role": "system", "content": INSTRUCTION_SYSTEM},
        {"role": "user", "content": INSTRUCTION_USER.format(author=author, text=example_passage)},
        {"role": "assistant", "content": example_answer},
        {"role": "user", "content": INSTRUCTION_USER.format(author=author, text=extract.text)},
    ]


def parse_instruction(completion: Completion, passage: str) -> str:
    """A usable instruction: 3-80 words, no refusal, not a copy of the passage, no talk about the task."""
    value = parse_json_object(completion.text).get("instruction")
    if not isinstance(value, str):
        raise InvalidOutput("malformed_json", "no instruction string")
    instruction = " ".join(value.split())
    if not instruction:
        raise InvalidOutput("empty")
    if REFUSAL.search(instruction):
        raise InvalidOutput("refusals")
    words = len(instruction.split())
    if words < 3 or words > 80:
        raise InvalidOutput("invalid", f"{words} words")
    if words >= 8 and instruction.lower().rstrip("?.!") in passage.lower():
        raise InvalidOutput("invalid", "copied from the passage")
    example = set(curation.words(json.loads(INSTRUCTION_EXAMPLE[1])["instruction"]))
    if (
        len(example & set(curation.words(instruction)))
        / len(example | set(curation.words(instruction)))
        >= 0.5
    ):
        raise InvalidOutput("invalid", "repeats the worked example")
    if META_CHATTER.search(instruction):
        raise InvalidOutput("invalid", "talks about the task instead of asking")
    return instruction


def parse_answer(completion: Completion) -> str:
    """A usable free-text answer: not empty, not a refusal; a cut-off answer ends at its last sentence."""
    text = completion.text.strip()
    if completion.finish_reason == "length":
        end = max(text.rfind(". "), text.rfind("! "), text.rfind("? "), text.rfind(".\n"))
        text = text[: end + 1] if end > 0 else text
    if not text:
        raise InvalidOutput("empty")
    if REFUSAL.search(text[:200]):
        raise InvalidOutput("refusals")
    return text


def generate_instructions(
    generator: Generator, extracts: Iterable[Extract], author: str, deadline: float | None = None
) -> list[tuple[Extract, str | None]]:
    """Back-translation: the LLM writes the instruction each extract answers (None where it failed
    or the deadline passed first)."""
    items = list(extracts)

    def one(extract: Extract) -> str | None:
        return generator.generate(
            instruction_messages(extract, author),
            lambda c: parse_instruction(c, extract.text),
            max_tokens=96,
            json_schema=INSTRUCTION_SCHEMA,
        )

    written = generator.map(one, items, desc=f"instructions [{author}]", deadline=deadline)
    return list(zip(items, written, strict=True))


def generate_answers(
    generator: Generator,
    prompts: Sequence[str],
    author: str,
    max_tokens: int,
    deadline: float | None = None,
) -> list[str | None]:
    """What the model says to each prompt in the training chat format: the rejected side of a pair."""
    return generator.map(
        lambda prompt: generator.generate(
            chat_messages(prompt, author=author), parse_answer, max_tokens=max_tokens
        ),
        list(prompts),
        desc=f"answers [{author}]",
        deadline=deadline,
    )
