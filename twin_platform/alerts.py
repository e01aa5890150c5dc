"""Run-failure alerts: one JSON line in a bounded, rotated log, and a Slack-compatible webhook.

The log used to grow forever; now it rotates like `logging.handlers.RotatingFileHandler`
(`alerts.jsonl` -> `alerts.jsonl.1` ... `.N`, the oldest dropped), under a file lock because the
daemon's sensor and a developer's tools may write at once. The webhook gets `{"text": ...}`, the
body Slack, Mattermost, Rocket.Chat and Teams' Slack-compatible hooks accept. A webhook that is
down or slow must never break the sensor (the daemon would then re-evaluate the same failure and
nothing after it would alert), so its failures are logged and reported, not raised, and every
call is bounded by a timeout. The text never holds secrets: error messages can quote connection
URLs or tokens, so known secret values and credential-looking strings are masked before the
alert leaves the process, in the log too.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from twin_platform.settings import Settings

logger = logging.getLogger("twin_platform.alerts")

MASK = "[REDACTED]"
# Environment variables whose values are secrets wherever they appear in an error message.
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|WEBHOOK)", re.IGNORECASE)
_URL_ENV = ("DATABASE_URL", "MONGODB_URI", "DAGSTER_POSTGRES_URL", "TWIN_MODEL_REGISTRY")
# Credential shapes in free text: user:password@ in URLs, bearer tokens, well-known key formats,
# `password=...`-style assignments.
_PATTERNS = (
    re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"),
    re.compile(r"(?i)\bbearer\s+[\w.~+/-]{8,}=*"),
    re.compile(
        r"\b(sk-(proj-|ant-)?[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}"
        r"|github_pat_\w{30,}|xox[abprs]-[\w-]{10,}|hf_[A-Za-z0-9]{30,}|glpat-[\w-]{20,})\b"
    ),
    re.compile(r"(?i)\b(api[_-]?key|secret|token|password|passwd)(\s*[:=]\s*)['\"]?[^\s'\",;]{4,}"),
)
MAX_ERROR_CHARS = 1500


@dataclass(frozen=True)
class AlertConfig:
    """Where alerts go; built from `Settings` at the entry point (the sensor)."""

    log_file: Path
    max_bytes: int = 1_000_000
    backups: int = 3
    webhook_url: str | None = None
    timeout_s: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertConfig:
        url = settings.alert_webhook_url
        return cls(
            log_file=settings.alerts_file,
            max_bytes=settings.alert_log_max_bytes,
            backups=settings.alert_log_backups,
            webhook_url=url.get_secret_value() if url else None,
            timeout_s=settings.alert_webhook_timeout_s,
        )


@dataclass(frozen=True)
class Alert:
    """One failed run, already redacted: safe to log, store and post."""

    at: str
    run_id: str
    job: str
    error: str

    def text(self) -> str:
        """The chat message: what failed, which run, and why."""
        return f":rotating_light: Dagster run failed: job `{self.job}`, run `{self.run_id}`\n{self.error}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


@dataclass(frozen=True)
class Delivery:
    logged: bool
    webhook: bool | None  # None: no webhook configured


def secret_values(environ: Mapping[str, str], min_length: int = 6) -> list[str]:
    """Values that must never be quoted: variables named like secrets, and URL passwords."""
    values = [
        v for name, v in environ.items() if _SECRET_NAME.search(name) and len(v) >= min_length
    ]
    for name in _URL_ENV:
        password = urlsplit(environ.get(name, "")).password if environ.get(name) else None
        if password and len(password) >= min_length:
            values.append(password)
    return sorted(set(values), key=len, reverse=True)  # longest first: no partial leftovers


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every known secret value and every credential-looking string masked."""
    for value in secrets:
        text = text.replace(value, MASK)
    text = _PATTERNS[0].sub(MASK, text)
    text = _PATTERNS[1].sub(f"Bearer {MASK}", text)
    text = _PATTERNS[2].sub(MASK, text)
    return _PATTERNS[3].sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)


def build_alert(
    run_id: str, job: str, error: str, environ: Mapping[str, str], at: datetime | None = None
) -> Alert:
    """The alert of a failed run, its error redacted and cut to MAX_ERROR_CHARS."""
    clean = redact(error.strip(), secret_values(environ))
    if len(clean) > MAX_ERROR_CHARS:
        clean = clean[: MAX_ERROR_CHARS - 1] + "…"
    stamp = (at or datetime.now(UTC)).isoformat()
    return Alert(at=stamp, run_id=run_id, job=job, error=clean or "(no error message)")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock = path.with_name(path.name + ".lock")
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _rotate(path: Path, backups: int) -> None:
    """alerts.jsonl -> .1 -> .2 ... -> .N; the oldest is dropped (no backups: truncated)."""
    if backups == 0:
        path.unlink(missing_ok=True)
        return
    for number in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{number}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{number + 1}"))
    os.replace(path, path.with_name(f"{path.name}.1"))


def append_rotating(path: Path, line: str, max_bytes: int, backups: int) -> None:
    """Append one line to `path`, rotating first if it would pass `max_bytes`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    with _locked(path):
        size = path.stat().st_size if path.exists() else 0
        if size and size + len(data) > max_bytes:
            _rotate(path, backups)
        with path.open("ab") as handle:
            handle.write(data)


def post_webhook(url: str, text: str, timeout_s: float) -> bool:
    """POST `{"text": text}`; True on a 2xx answer. Failures are logged (without the URL, which
    holds the hook's token), never raised."""
    host = urlsplit(url).hostname or "?"
    try:
        response = httpx.post(
            url, json={"text": text}, timeout=httpx.Timeout(timeout_s), follow_redirects=False
        )
    except httpx.HTTPError as exc:
        logger.warning("alert webhook at %s failed: %s", host, type(exc).__name__)
        return False
    if not response.is_success:
        logger.warning("alert webhook at %s answered HTTP %d", host, response.status_code)
        return False
    return True


def send_alert(alert: Alert, config: AlertConfig) -> Delivery:
    """Log the alert (bounded, rotated), then post it to the webhook if one is configured."""
    try:
        append_rotating(config.log_file, alert.to_json(), config.max_bytes, config.backups)
        logged = True
    except OSError as exc:
        logger.warning("alert log %s not written: %s", config.log_file, exc)
        logged = False
    webhook = None
    if config.webhook_url:
        webhook = post_webhook(config.webhook_url, alert.text(), config.timeout_s)
    return Delivery(logged=logged, webhook=webhook)
