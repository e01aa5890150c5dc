"""The one HTTP client every crawler uses: safe by default against hostile or broken sites.

- SSRF guard: a host must resolve only to public addresses (no loopback, private, link-local,
  multicast or reserved, also when wrapped in an IPv6 transition address: `addresses`), unless its
  network is in `crawl_allow_networks` or the source's own `allow_networks`. The connection then
  goes to the address that was checked (with the original Host header and TLS name), so a DNS
  answer that changes between check and connect cannot slip through. Every redirect hop is checked
  again.
- Timeouts, retries with exponential backoff and jitter on timeouts, 429 and 5xx (Retry-After is
  respected, up to a cap), a global and a per-domain concurrency limit, a per-domain request rate,
  a maximum body size (streamed, so a huge page is cut off early), a redirect limit with loop
  detection, and decoding that survives invalid UTF-8 (bad bytes replaced and counted).
- Deadlines: a whole request (hops, retries, body) and a whole source (`for_source`) have a time
  limit, so a server trickling a byte just inside the read timeout cannot hold a collection run.
  Each clock starts when its first request is sent: waiting in the queue before that is free.
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import random
import socket
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from twin_platform.addresses import is_allowed, is_public, parse_address
from twin_platform.settings import Settings

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 30.0
USER_AGENT = (
    "TwinPlatformBot/0.1 (+https://github.com/twin-platform; collects an author's own writing)"
)


class FetchError(Exception):
    """A URL could not be collected. The message is one line, meant for logs and run metadata."""

    def __init__(
        self, url: str, reason: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


class BlockedAddressError(FetchError):
    """The URL points at a loopback/private/link-local address and no setting allows it."""


@dataclass(frozen=True)
class HttpPolicy:
    timeout_s: float = 20.0
    retries: int = 3
    backoff_s: float = 0.5
    concurrency: int = 8
    per_domain_concurrency: int = 2
    per_domain_rps: float = 4.0
    max_bytes: int = 5_000_000
    max_redirects: int = 5
    allow_networks: tuple[str, ...] = ()
    request_deadline_s: float = 120.0
    source_deadline_s: float = 1800.0
    user_agent: str = USER_AGENT

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpPolicy:
        return cls(
            timeout_s=settings.crawl_timeout_s,
            retries=settings.crawl_retries,
            backoff_s=settings.crawl_backoff_s,
            concurrency=settings.crawl_concurrency,
            per_domain_concurrency=settings.crawl_per_domain_concurrency,
            per_domain_rps=settings.crawl_per_domain_rps,
            max_bytes=settings.crawl_max_bytes,
            max_redirects=settings.crawl_max_redirects,
            allow_networks=tuple(settings.crawl_allow_networks),
            request_deadline_s=settings.crawl_request_deadline_s,
            source_deadline_s=settings.crawl_source_deadline_s,
        )


@dataclass(frozen=True)
class Page:
    url: str  # final URL, after redirects
    status: int
    content_type: str
    text: str
    decode_errors: int = 0
    charset: str | None = None  # as the response declared it
    body: bytes = field(default=b"", repr=False)  # the undecoded bytes, for parsers that sniff

    @property
    def is_html(self) -> bool:
        return self.content_type in ("text/html", "application/xhtml+xml")

    @property
    def is_feed(self) -> bool:
        return self.content_type in (
            "application/rss+xml",
            "application/atom+xml",
            "application/xml",
            "text/xml",
        )


def check_address(host: str, allow_networks: tuple[str, ...]) -> list[str]:
    """Resolve `host` and return its addresses, or raise BlockedAddressError for a non-public one."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchError(host, f"cannot resolve host ({exc.strerror})") from exc
    addresses = sorted({info[4][0] for info in infos}, key=lambda a: (":" in a, a))  # IPv4 first
    allowed = tuple(ipaddress.ip_network(n, strict=False) for n in allow_networks)
    for address in addresses:
        ip = parse_address(address)
        if not is_public(ip) and not is_allowed(ip, allowed):
            raise BlockedAddressError(
                host,
                f"resolves to non-public address {ip}; refused (allow its network in"
                " TWIN_CRAWL_ALLOW_NETWORKS, or in the source's allow_networks)",
            )
    return addresses


def validate_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise FetchError(url, f"invalid URL ({exc})") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise FetchError(url, "only http(s) URLs with a host can be crawled")
    if parsed.userinfo:
        raise FetchError(url, "URLs with credentials are refused")
    return parsed


def decode(body: bytes, charset: str | None) -> tuple[str, int]:
    """Text and the number of undecodable bytes (replaced by U+FFFD rather than failing)."""
    encoding = charset or "utf-8"
    try:
        text = body.decode(encoding)
        return text, 0
    except LookupError:
        encoding = "utf-8"
    except UnicodeDecodeError:
        pass
    text = body.decode(encoding, errors="replace")
    return text, text.count("\ufffd")


@dataclass
class _Clock:
    """A deadline that starts when its first request is sent, not while it waits in a queue."""

    limit_s: float
    label: str  # "request" or "source", for the message
    started: float | None = None

    def start(self) -> None:
        if self.started is None:
            self.started = time.monotonic()

    def left(self) -> float:
        return self.limit_s - (0.0 if self.started is None else time.monotonic() - self.started)

    def error(self, url: str) -> FetchError:
        return FetchError(
            url, f"no complete response within the {self.limit_s:g} s {self.label} deadline"
        )


@dataclass
class _DomainGate:
    semaphore: asyncio.Semaphore
    interval_s: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    next_start: float = 0.0

    async def wait_turn(self) -> None:
        async with self.lock:
            now = time.monotonic()
            delay = self.next_start - now
            self.next_start = max(now, self.next_start) + self.interval_s
        if delay > 0:
            await asyncio.sleep(delay)


class SafeClient:
    """Async HTTP GET with the guards above. Use as `async with SafeClient(policy) as client`."""

    def __init__(self, policy: HttpPolicy | None = None) -> None:
        self.policy = policy or HttpPolicy()
        self._client: httpx.AsyncClient | None = None
        self._source: _Clock | None = None
        self._global = asyncio.Semaphore(self.policy.concurrency)
        self._domains: dict[str, _DomainGate] = defaultdict(
            lambda: _DomainGate(
                asyncio.Semaphore(self.policy.per_domain_concurrency),
                1 / self.policy.per_domain_rps,
            )
        )

    async def __aenter__(self) -> SafeClient:
        timeout = httpx.Timeout(self.policy.timeout_s)
        self._client = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": self.policy.user_agent},
            trust_env=False,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()

    def for_source(self, allow_networks: tuple[str, ...] = ()) -> SafeClient:
        """This client for one source: the same connections and limits, plus the networks that
        source may reach and its own deadline clock."""
        view = copy.copy(self)
        networks = (*self.policy.allow_networks, *allow_networks)
        view.policy = replace(self.policy, allow_networks=networks)
        view._source = _Clock(self.policy.source_deadline_s, "source")
        return view

    async def get(
        self, url: str, accept: str = "text/html,application/xhtml+xml,*/*;q=0.8"
    ) -> Page:
        """GET with redirects followed by hand, so each hop passes the SSRF guard again."""
        seen: set[str] = set()
        current = url
        clocks = [_Clock(self.policy.request_deadline_s, "request")]
        clocks += [self._source] if self._source is not None else []
        for _ in range(self.policy.max_redirects + 1):
            if current in seen:
                raise FetchError(url, f"redirect loop at {current}")
            seen.add(current)
            response = await self._get_with_retries(current, accept, clocks)
            if isinstance(response, Page):
                return response
            current = response
        raise FetchError(url, f"more than {self.policy.max_redirects} redirects")

    async def _get_with_retries(self, url: str, accept: str, clocks: list[_Clock]) -> Page | str:
        """A Page, or the next URL of a redirect."""
        parsed = validate_url(url)
        host = parsed.host
        addresses = await asyncio.to_thread(check_address, host, self.policy.allow_networks)
        gate = self._domains[host]
        attempt = 0
        while True:
            async with self._global, gate.semaphore:
                await gate.wait_turn()
                for clock in clocks:
                    clock.start()
                clock = min(clocks, key=_Clock.left)
                if clock.left() <= 0:
                    raise clock.error(url)
                deadline = asyncio.timeout(clock.left())
                try:
                    async with deadline:
                        outcome = await self._get_once(url, parsed, addresses[0], accept)
                except TimeoutError:
                    if not deadline.expired():
                        raise
                    raise clock.error(url) from None
                except (httpx.TimeoutException, httpx.TransportError) as exc:
                    outcome = FetchError(url, f"{type(exc).__name__}: {exc or 'no detail'}")
            if not isinstance(outcome, FetchError):
                return outcome
            if outcome.status is not None and outcome.status not in RETRY_STATUSES:
                raise outcome
            delay = self.policy.backoff_s * 2**attempt * random.uniform(0.5, 1.5)
            if outcome.retry_after is not None:
                delay = max(delay, min(outcome.retry_after, MAX_RETRY_AFTER_S))
            clock = min(clocks, key=_Clock.left)
            if attempt >= self.policy.retries or delay >= clock.left():
                stop = "" if attempt >= self.policy.retries else f"; {clock.label} deadline near"
                reason = f"{outcome.reason} (after {attempt + 1} attempts{stop})"
                raise FetchError(url, reason, outcome.status)
            attempt += 1
            await asyncio.sleep(delay)

    async def _get_once(
        self, url: str, parsed: httpx.URL, address: str, accept: str
    ) -> Page | str | FetchError:
        assert self._client is not None
        ip_host = f"[{address}]" if ":" in address else address
        pinned = parsed.copy_with(host=ip_host.strip("[]")) if ip_host != parsed.host else parsed
        headers = {"Host": parsed.netloc.decode("ascii"), "Accept": accept}
        extensions = {"sni_hostname": parsed.host} if parsed.scheme == "https" else {}
        request = self._client.build_request("GET", pinned, headers=headers, extensions=extensions)
        response = await self._client.send(request, stream=True)
        try:
            if response.is_redirect:
                location = response.headers.get("location")
                if not location:
                    return FetchError(
                        url,
                        f"redirect {response.status_code} without Location",
                        response.status_code,
                    )
                return urljoin(url, location)
            if response.status_code >= 400:
                retry_after = _retry_after(response.headers.get("retry-after"))
                return FetchError(
                    url, f"HTTP {response.status_code}", response.status_code, retry_after
                )
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > self.policy.max_bytes:
                raise FetchError(
                    url,
                    f"page of {int(declared):,} bytes exceeds the {self.policy.max_bytes:,}-byte limit",
                    413,
                )
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.policy.max_bytes:
                    raise FetchError(
                        url, f"page exceeds the {self.policy.max_bytes:,}-byte limit", 413
                    )
                chunks.append(chunk)
        finally:
            await response.aclose()
        body = b"".join(chunks)
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        text, errors = decode(body, response.charset_encoding)
        return Page(
            url=url,
            status=response.status_code,
            content_type=content_type,
            text=text,
            decode_errors=errors,
            charset=response.charset_encoding,
            body=body,
        )


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def canonical_url(url: str) -> str:
    """Lower-case scheme and host, no fragment, no tracking parameters: one document per page."""
    parts = urlsplit(url.strip())
    query = "&".join(
        p
        for p in parts.query.split("&")
        if p and not p.lower().startswith(("utm_", "fbclid=", "gclid=", "ref=", "source="))
    )
    path = parts.path or "/"
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, query, ""))
