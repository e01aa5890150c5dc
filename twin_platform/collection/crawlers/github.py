"""Code repositories: a shallow `git clone`, then the author's own text files as one Markdown document.

Kept: source, docs and config a person wrote. Skipped (and counted by reason): `.git`, files that
hold secrets (`.env*`, private keys, credentials; never collected, so never indexed or served),
binaries (by extension or a NUL byte), vendored and generated folders, lock files, minified files,
files over `repo_max_file_bytes`, and anything past `repo_max_total_bytes`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

from twin_platform.collection.collected import Collected, Failure, parse_failure
from twin_platform.collection.crawlers.http import FetchError, SafeClient, check_address
from twin_platform.documents import Repository

SKIP_DIRS = frozenset(
    [
        ".git",
        "node_modules",
        "vendor",
        "vendored",
        "third_party",
        "third-party",
        "external",
        ".venv",
        "venv",
        "env",
        "dist",
        "build",
        "target",
        "__pycache__",
        ".tox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".idea",
        ".vscode",
        "site-packages",
        "bower_components",
        ".next",
        "coverage",
    ]
)
LOCK_FILES = frozenset(
    [
        "package-lock.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "poetry.lock",
        "uv.lock",
        "pipfile.lock",
        "cargo.lock",
        "gemfile.lock",
        "composer.lock",
        "go.sum",
        "requirements.lock",
        "pdm.lock",
        "bun.lockb",
    ]
)
BINARY_SUFFIXES = frozenset(
    [
        ".png",
        ".jpg",
        ".jpeg",
        ".gif",
        ".ico",
        ".bmp",
        ".webp",
        ".svg",
        ".pdf",
        ".zip",
        ".gz",
        ".tgz",
        ".bz2",
        ".xz",
        ".7z",
        ".tar",
        ".whl",
        ".egg",
        ".so",
        ".dylib",
        ".dll",
        ".exe",
        ".bin",
        ".o",
        ".a",
        ".pyc",
        ".class",
        ".jar",
        ".pt",
        ".pth",
        ".safetensors",
        ".gguf",
        ".onnx",
        ".parquet",
        ".arrow",
        ".npy",
        ".npz",
        ".pkl",
        ".db",
        ".sqlite",
        ".woff",
        ".woff2",
        ".ttf",
        ".otf",
        ".eot",
        ".mp3",
        ".mp4",
        ".wav",
        ".mov",
        ".avi",
        ".psd",
        ".xlsx",
        ".docx",
        ".pptx",
    ]
)
# Files whose purpose is to hold credentials: by exact name, name prefix, or suffix (lower case).
SECRET_NAMES = frozenset(
    [
        ".netrc",
        ".npmrc",
        ".pypirc",
        ".pgpass",
        ".htpasswd",
        ".git-credentials",
        ".dockercfg",
        "credentials",
        "credentials.json",
        "client_secret.json",
        "secrets.json",
        "secrets.yaml",
        "secrets.yml",
        "secrets.toml",
        "secrets.env",
    ]
)
SECRET_PREFIXES = (
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    "service-account",
    "client_secret_",
)
SECRET_SUFFIXES = (
    ".pem",
    ".key",
    ".p12",
    ".pfx",
    ".jks",
    ".keystore",
    ".kdbx",
    ".ppk",
    ".tfstate",
    ".tfstate.backup",
    ".tfvars",
    "-credentials.json",
    "_credentials.json",
)
LANGUAGES = {
    ".py": "python",
    ".md": "markdown",
    ".toml": "toml",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".json": "json",
    ".js": "javascript",
    ".ts": "typescript",
    ".sql": "sql",
    ".sh": "bash",
    ".rs": "rust",
    ".go": "go",
    ".java": "java",
    ".rb": "ruby",
    ".c": "c",
    ".h": "c",
    ".cpp": "cpp",
}
CLONE_TIMEOUT_S = 300
GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "true",
    # No system or user gitconfig: its insteadOf rewrites, proxies and credential helpers would
    # send a clone somewhere other than the address the SSRF guard checked, or with credentials.
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "LC_ALL": "C",
}


@dataclass(frozen=True)
class RepoLimits:
    max_file_bytes: int = 200_000
    max_total_bytes: int = 3_000_000


def skip_reason(relative: Path, head: bytes) -> str | None:
    """Why a file is left out of the document, or None to keep it."""
    if any(part in SKIP_DIRS for part in relative.parts[:-1]):
        return "vendored or generated"
    name = relative.name.lower()
    if is_secret_file(name):
        return "secrets"
    if name in LOCK_FILES or name.endswith(".lock"):
        return "lock file"
    if relative.suffix.lower() in BINARY_SUFFIXES or b"\x00" in head:
        return "binary"
    if re.search(r"\.min\.(js|css)$", name):
        return "minified"
    return None


def is_secret_file(name: str) -> bool:
    """`.env`, `.env.local`, private keys, credentials: the lower-case file name says so."""
    return (
        name == ".env"
        or name.startswith(".env.")
        or name in SECRET_NAMES
        or name.startswith(SECRET_PREFIXES)
        or name.endswith(SECRET_SUFFIXES)
    )


def repository_document(
    checkout: Path, author: str, url: str, limits: RepoLimits, commit: str | None
) -> Repository:
    kept: list[tuple[str, str]] = []
    skipped: Counter[str] = Counter()
    total = 0
    files = sorted(
        (
            p
            for p in checkout.rglob("*")
            if p.is_file() and not p.is_symlink() and ".git" not in p.relative_to(checkout).parts
        ),
        key=lambda p: (
            p.name.lower() != "readme.md",
            len(p.relative_to(checkout).parts),
            str(p).lower(),
        ),
    )
    for path in files:
        relative = path.relative_to(checkout)
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8192)
        reason = skip_reason(relative, head)
        if reason is None and size > limits.max_file_bytes:
            reason = "over the file size limit"
        if reason is None and total + size > limits.max_total_bytes:
            reason = "over the repository size limit"
        if reason is not None:
            skipped[reason] += 1
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        if text.count("\ufffd") > max(10, len(text) // 100):
            skipped["binary"] += 1
            continue
        kept.append((relative.as_posix(), text))
        total += size
    if not kept:
        raise FetchError(url, f"no text files to keep (skipped: {dict(skipped) or 'none'})")
    name = "/".join(urlsplit(url).path.strip("/").split("/")[-2:]) or checkout.name
    sections = [f"# {name}"]
    for relative, text in kept:
        fence = "````" if "```" in text else "```"
        sections.append(
            f"## {relative}\n\n{fence}{LANGUAGES.get(Path(relative).suffix.lower(), '')}\n{text.rstrip()}\n{fence}"
        )
    return Repository(
        author=author,
        platform="github" if "github.com" in url else "git",
        url=url,
        title=name,
        content="\n\n".join(sections) + "\n",
        metadata={
            "files": [r for r, _ in kept],
            "skipped": dict(skipped),
            "bytes": total,
            "commit": commit,
        },
    )


def _git(
    args: list[str],
    cwd: Path | None = None,
    timeout: float = CLONE_TIMEOUT_S,
    env: dict[str, str] | None = None,
) -> str:
    result = subprocess.run(
        ["git", "-c", "protocol.ext.allow=never", "-c", "http.followRedirects=false", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **GIT_ENV, **(env or {})},
        check=False,
    )
    if result.returncode != 0:
        message = (result.stderr.strip() or result.stdout.strip() or "git failed").splitlines()[-1]
        raise RuntimeError(message[:300])
    return result.stdout.strip()


def git_repository_for_folder(folder: Path, cache_dir: Path) -> Path:
    """A git repository with the folder's files: the folder itself if it is one, else a built copy.

    The copy is content-addressed and committed with a fixed author and date, so the same folder
    always gives the same commit. This is how the sample corpus ships its repository.
    """
    if (folder / ".git").exists():
        return folder
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.relative_to(folder).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    target = cache_dir / f"{folder.name}-{digest.hexdigest()[:12]}"
    if (target / ".git").exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=cache_dir))
    shutil.copytree(folder, staging, dirs_exist_ok=True)
    stamp = {"GIT_AUTHOR_NAME": "Twin Platform", "GIT_AUTHOR_EMAIL": "twin@localhost"}
    stamp |= {
        "GIT_COMMITTER_NAME": stamp["GIT_AUTHOR_NAME"],
        "GIT_COMMITTER_EMAIL": stamp["GIT_AUTHOR_EMAIL"],
    }
    stamp |= {
        "GIT_AUTHOR_DATE": "2025-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2025-01-01T00:00:00Z",
    }
    try:
        for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "Import"]):
            _git(args, cwd=staging, timeout=120, env=stamp)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise FetchError(str(folder), f"cannot make a git repository of the folder: {exc}") from exc
    try:
        staging.rename(target)
    except OSError:  # another process built it first
        shutil.rmtree(staging, ignore_errors=True)
    return target


def pin_address(remote: str, address: str) -> list[str]:
    """git options that connect to `address` for the remote's host: git resolves the name again
    after the SSRF guard did, and a DNS answer that changed in between must not count."""
    parts = urlsplit(remote)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    ip = f"[{address}]" if ":" in address else address
    return ["-c", f"http.curloptResolve={host}:{port}:{ip}"]


def clone_and_read(
    source: str, author: str, url: str, limits: RepoLimits, address: str | None = None
) -> Repository:
    """Shallow-clone `source` (an https URL or a local repository) and build its document; with
    `address` (the one the SSRF guard checked), git connects there and nowhere else."""
    with tempfile.TemporaryDirectory(prefix="twin-clone-") as tmp:
        checkout = Path(tmp) / "repo"
        remote = source if "://" in source else Path(source).resolve().as_uri()
        pinned = pin_address(remote, address) if address and "://" in source else []
        try:
            _git(
                [
                    *pinned,
                    "clone",
                    "--depth",
                    "1",
                    "--single-branch",
                    "--no-tags",
                    "-q",
                    remote,
                    str(checkout),
                ]
            )
            commit = _git(["rev-parse", "HEAD"], cwd=checkout, timeout=30)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            raise FetchError(url, f"git clone failed: {exc}") from exc
        return repository_document(checkout, author, url, limits, commit)


def normalise_remote(url: str) -> str:
    """`https://github.com/owner/repo[.git|/tree/...]` -> `https://github.com/owner/repo`."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    if parts.scheme != "https" or len(segments) < 2:
        raise FetchError(url, "expected https://HOST/OWNER/REPO")
    repo = segments[1].removesuffix(".git")
    return f"https://{parts.netloc.lower()}/{segments[0]}/{repo}"


class GitHubCrawler:
    """GitHub, or any https git host when the source's kind is `git`."""

    name: ClassVar[str] = "github"
    hosts: ClassVar[tuple[str, ...]] = ("github.com",)

    def __init__(self, limits: RepoLimits | None = None) -> None:
        self.limits = limits or RepoLimits()

    async def crawl(self, url: str, author: str, client: SafeClient) -> Collected:
        try:
            remote = normalise_remote(url)
            addresses = await asyncio.to_thread(
                check_address, urlsplit(remote).hostname or "", client.policy.allow_networks
            )
            document = await asyncio.to_thread(
                clone_and_read, remote, author, remote, self.limits, addresses[0]
            )
        except FetchError as exc:
            return Collected(failures=[Failure(url, exc.reason)])
        except Exception as exc:  # a checkout that cannot be read costs only this repository
            return Collected(failures=[parse_failure(url, exc)])
        return Collected(documents=[document])
