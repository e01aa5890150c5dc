"""Retries with exponential backoff, jitter and a budget, so retries never become the outage."""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")
RETRYABLE_STATUS = frozenset({429, 503})


class RetryableError(Exception):
    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass
class RetryPolicy:
    attempts: int = 3
    base_delay_s: float = 0.1
    budget: float = 0.10  # retries may add at most 10% to the call rate
    window_s: float = 10.0
    _calls: deque[float] = field(default_factory=deque)
    _retries: deque[float] = field(default_factory=deque)

    def _trim(self, now: float) -> None:
        for q in (self._calls, self._retries):
            while q and q[0] < now - self.window_s:
                q.popleft()

    def _budget_left(self, now: float) -> bool:
        self._trim(now)
        return len(self._retries) < max(1, self.budget * len(self._calls))

    def call(self, fn: Callable[..., T], *args: object) -> T:
        self._calls.append(time.monotonic())
        for attempt in range(self.attempts + 1):
            try:
                return fn(*args)
            except (TimeoutError, ConnectionResetError, RetryableError) as exc:
                now = time.monotonic()
                if attempt == self.attempts or not self._budget_left(now):
                    raise
                self._retries.append(now)
                delay = self.base_delay_s * 2**attempt * random.uniform(0.5, 1.5)
                if isinstance(exc, RetryableError) and exc.retry_after_s is not None:
                    delay = max(delay, exc.retry_after_s)
                time.sleep(delay)
        raise AssertionError("unreachable")
