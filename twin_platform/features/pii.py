"""Secrets and personal data, replaced by typed placeholders before anything is indexed or trained on.

One scrubber for cleaning (so chunks, vectors and `/retrieve` snippets never hold them) and for
dataset curation. Secrets are found by detect-secrets (Yelp's scanner: provider key formats,
keyword assignments, private keys, JWTs, basic-auth URLs, high-entropy quoted strings); the
patterns below add what it does not look for: emails, phone numbers, public IP addresses (its own
IP detector is silenced by its default filters), provider keys standing alone in prose
(`sk-ant-...`, `hf_...`), bearer tokens, and `password = value` where its line context misses it.
That last pattern takes only a literal with a digit, never an expression: taking any value, it
replaced 6 lines of code of the reference corpus (`token=hf_token)`,
`password = password or os.getenv(...)`) and no secret. Private and loopback addresses
(`127.0.0.1`, `10.0.0.2`) are not personal data and stay, as code needs them.
Figures: benchmarks/results/real_corpus.md.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable

PLACEHOLDERS = {
    "private_key": "[PRIVATE_KEY]",
    "jwt": "[SECRET]",
    "api_key": "[SECRET]",
    "token": "[SECRET]",
    "email": "[EMAIL]",
    "phone": "[PHONE]",
    "ip_address": "[IP]",
}
# detect-secrets' secret types, by the count they go to; the others are provider keys (api_key).
DETECTED_KINDS = {
    "Private Key": "private_key",
    "JSON Web Token": "jwt",
    "Secret Keyword": "token",
    "Basic Auth Credentials": "token",
    "Base64 High Entropy String": "token",
    "Hex High Entropy String": "token",
}
PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (
        "private_key",
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL
        ),
    ),
    ("jwt", re.compile(r"\beyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}\b")),
    (
        "api_key",
        re.compile(
            r"\b(sk-(proj-|ant-)?[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}"
            r"|github_pat_\w{30,}|xox[abprs]-[\w-]{10,}|AIza[\w-]{35}|hf_[A-Za-z0-9]{30,}|glpat-[\w-]{20,})\b"
        ),
    ),
    (
        "token",
        re.compile(
            r"(?i)\b(bearer\s+[\w.~+/-]{16,}=*|(api[_-]?key|secret|token|password|passwd)\s*[:=]\s*"
            r"['\"]?(?=[^\s'\"]*\d)[^\s'\"()\[\]{}.,;]{8,})"  # a literal with a digit, not code
        ),
    ),
    ("email", re.compile(r"\b[\w.+-]+@[\w-]+(\.[\w-]+)*\.[A-Za-z]{2,}\b")),
    (
        "phone",
        re.compile(
            r"(?<![\w.])(\+\d{1,3}[\s.-]?)?(\(\d{2,4}\)[\s.-]?|\d{2,4}[\s.-])\d{3,4}[\s.-]\d{3,4}(?!\w|\.\d)"
        ),
    ),
]
_IPV4 = re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")
_TOKEN_CHAR = re.compile(r"[\w\-+/.~]")  # and "=" to the right only: base64 padding, not `NAME=`
_PLACEHOLDER = re.compile(r"\[(?:PRIVATE_KEY|SECRET|EMAIL|PHONE|IP)\]")
_KEY_BODY = re.compile(r"^[A-Za-z0-9+/=\s-]*$")


def scrub_pii(text: str) -> tuple[str, Counter[str]]:
    """`text` with secrets and personal data replaced, and what was replaced, by kind."""
    return scrub_texts([text])[0]


def scrub_texts(texts: Iterable[str]) -> list[tuple[str, Counter[str]]]:
    """Many texts under one detect-secrets configuration (configuring it costs ~2 ms)."""
    from detect_secrets.settings import default_settings

    with default_settings() as settings:
        settings.filters[f"{__name__}.{is_indirect_reference.__name__}"] = {}
        settings.disable_filters(_INDIRECT_REFERENCE)  # ours instead; clears the filter cache
        return [_scrub(text) for text in texts]


_INDIRECT_REFERENCE = "detect_secrets.filters.heuristic.is_indirect_reference"


def is_indirect_reference(line: str) -> bool:
    """detect-secrets' filter of `secret = get_secret()` lines, without running its regex on lines
    it cannot match (no `:`, `=` or `!`, or no brackets): that regex backtracks quadratically over
    a line, and ran on every line of prose, half of what cleaning a document cost."""
    from detect_secrets.filters.heuristic import is_indirect_reference as regex_filter

    return (
        any(sign in line for sign in ":=!")
        and any(bracket in line for bracket in "([")
        and any(bracket in line for bracket in ")]")
        and regex_filter(line)
    )


def _scrub(text: str) -> tuple[str, Counter[str]]:
    found: Counter[str] = Counter()
    text = _scrub_detected(text, found)
    for name, pattern in PATTERNS:
        text, n = pattern.subn(PLACEHOLDERS[name], text)
        found[name] += n
    return _scrub_public_ips(text, found), +found


def _scrub_public_ips(text: str, found: Counter[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if not ipaddress.ip_address(match.group(0)).is_global:
            return match.group(0)
        found["ip_address"] += 1
        return PLACEHOLDERS["ip_address"]

    return _IPV4.sub(replace, text)


def _scrub_detected(text: str, found: Counter[str]) -> str:
    """Replace what detect-secrets finds, each finding widened to its whole token (it reports
    `ghp` for a GitHub token, the first two parts of a JWT)."""
    findings = _detect(text)
    if not findings:
        return text
    lines = text.split("\n")
    # Per line, named detectors (Slack, AWS, ...) before the generic ones (entropy, keywords).
    order = sorted(findings, key=lambda f: (f[0], f[1] == "token", -len(f[2])))
    for index, kind, value in order:
        if kind == "private_key":
            found[kind] += _drop_key_block(lines, index)
            continue
        line, replaced = _replace_token(lines[index], value, PLACEHOLDERS[kind])
        lines[index] = line
        found[kind] += replaced
    return "\n".join(lines)


def _detect(text: str) -> list[tuple[int, str, str]]:
    """(line index, kind, value) of each secret detect-secrets sees in `text`, read as Markdown."""
    from detect_secrets.core.scan import scan_file

    if not text.strip():
        return []
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - scan_file reads a path
        "w", suffix=".md", encoding="utf-8", errors="replace", delete=False
    )
    try:
        with handle:
            handle.write(text)
        return [
            (s.line_number - 1, DETECTED_KINDS.get(s.type, "api_key"), s.secret_value or "")
            for s in scan_file(handle.name)
            if s.secret_value
        ]
    finally:
        os.unlink(handle.name)


def _replace_token(line: str, value: str, placeholder: str) -> tuple[str, int]:
    """Every occurrence of `value` in `line`, widened to the surrounding token characters."""
    replaced = 0
    start = line.find(value)
    while start >= 0:
        end = start + len(value)
        while start > 0 and _TOKEN_CHAR.match(line[start - 1]):
            start -= 1
        while end < len(line) and (_TOKEN_CHAR.match(line[end]) or line[end] == "="):
            end += 1
        token = line[start:end].strip(".")
        if _PLACEHOLDER.fullmatch(token) or not token:
            break
        line = line[:start] + line[start:end].replace(token, placeholder, 1) + line[end:]
        replaced += 1
        start = line.find(value, start + len(placeholder))
    return line, replaced


def _drop_key_block(lines: list[str], index: int) -> int:
    """A private key's BEGIN line and its body (up to END, or while lines look like base64)."""
    if "PRIVATE KEY" not in lines[index]:
        return 0
    end = index + 1
    while end < len(lines) and "-----END" not in lines[end] and _KEY_BODY.match(lines[end]):
        end += 1
    if end < len(lines) and "-----END" in lines[end]:
        end += 1
    lines[index:end] = [PLACEHOLDERS["private_key"]] + [""] * (end - index - 1)
    return 1
