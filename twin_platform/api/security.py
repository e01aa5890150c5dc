"""API keys, per-key rate limits, the request size limit, and where an API may listen.

Keys come from TWIN_API_KEYS (comma-separated) and are sent as `Authorization: Bearer <key>`. With
none configured the API is open, which is allowed on loopback only (or with TWIN_API_ALLOW_OPEN),
and says so in the log at start. A key is never logged or stored: traces and limits use `key_id`,
a short hash. Requests must name an allowed host (TWIN_API_ALLOWED_HOSTS), so a web page cannot
reach a local API through DNS rebinding.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from twin_platform.servers.common import ServiceError

ANONYMOUS = "anonymous"
PLACEHOLDER_KEY = "change-me"  # .env.example's value: a key anyone can read is no key
LOOPBACK_NAMES = ("localhost",)


def key_id(key: str) -> str:
    return "k_" + hashlib.sha256(key.encode()).hexdigest()[:12]


class UnsafeServeError(ServiceError):
    """The API would be reachable without a key, or with a published placeholder key."""


def is_loopback(host: str) -> bool:
    """True for an address or name only this machine reaches; `0.0.0.0`, `::` and names are not."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_serving_safety(keys: list[str], allow_open: bool, bind_host: str) -> None:
    """Fail closed, in one line, before anything listens: no keys on a non-loopback address
    unless TWIN_API_ALLOW_OPEN says so, and never the example file's placeholder key."""
    if any(key.startswith(PLACEHOLDER_KEY) for key in keys):
        raise UnsafeServeError(
            "TWIN_API_KEYS still holds the placeholder from .env.example: set real keys"
            " (e.g. `openssl rand -hex 32`)"
        )
    if not keys and not allow_open and not is_loopback(bind_host):
        raise UnsafeServeError(
            f"refusing to serve without TWIN_API_KEYS on {bind_host} (reachable from the"
            " network): set TWIN_API_KEYS=key1,key2, bind 127.0.0.1, or set"
            " TWIN_API_ALLOW_OPEN=true to serve open on purpose"
        )


def allowed_hosts(configured: str, bind_host: str) -> list[str]:
    """Host header values to answer: the configured ones (IPv6 literals also in brackets, as Host
    headers carry them) plus a concrete bind address, which no rebinding attack can produce."""
    hosts = [h.strip().lower() for h in configured.split(",") if h.strip()]
    if bind_host and bind_host not in ("0.0.0.0", "::", "[::]"):
        hosts.append(bind_host.lower())
    bracketed = [f"[{h.strip('[]')}]" for h in hosts if ":" in h.strip("[]")]
    return list(dict.fromkeys(hosts + bracketed))


class KeyStore:
    def __init__(self, keys: list[str]) -> None:
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys]

    @property
    def open(self) -> bool:
        return not self._digests

    def identify(self, presented: str | None) -> str | None:
        """The key id of a valid key (constant-time comparison), ANONYMOUS when open, else None."""
        if self.open:
            return ANONYMOUS
        if not presented:
            return None
        digest = hashlib.sha256(presented.encode()).digest()
        if any(hmac.compare_digest(digest, known) for known in self._digests):
            return key_id(presented)
        return None


class RateLimiter:
    """A token bucket per key: `per_minute` requests a minute, bursts up to a tenth of that (at least 10)."""

    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(max(10, per_minute // 10))
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        """0 when allowed, else seconds to wait before the next request is allowed."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate


ASGIApp = Callable[
    [dict[str, Any], Callable[[], Awaitable[dict[str, Any]]], Callable[..., Awaitable[None]]],
    Awaitable[None],
]


class BodySizeLimit:
    """413 for a body over `max_bytes`: by Content-Length, or for a chunked body (no length) by
    reading it first, up to the limit, and replaying it to the app."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or {}).get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.max_bytes:
                await _too_large(send, self.max_bytes)
                return
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await _too_large(send, self.max_bytes)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _too_large(send: Any, max_bytes: int) -> None:
    import json

    body = json.dumps(
        {
            "error": {
                "message": f"request body over {max_bytes} bytes",
                "type": "request_too_large",
                "param": None,
                "code": 413,
            }
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def retry_after_header(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}
