"""The model registry: immutable, numbered model versions with a manifest, and movable aliases.

Layout under the root (a local folder by default, `s3://bucket/prefix` by configuration)::

    <name>/versions/<n>/         an HF folder (merged weights, tokenizer) + manifest.json
    <name>/aliases.json          {"candidate": 3, "production": 2}

A version is written to a temporary folder and renamed into place (locally) or has its manifest
uploaded last (S3), so a crash never leaves a half-written version visible. Registering the same
weights twice returns the existing version instead of a duplicate. Training registers new versions
as `candidate`; evaluation promotes one to `production`, which the API serves.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twin_platform.fsutil import publishing, write_atomic
from twin_platform.settings import Settings

CANDIDATE = "candidate"
PRODUCTION = "production"
MANIFEST = "manifest.json"
HISTORY = "alias_history.json"


def model_name(author: str) -> str:
    """One registry model per author: every version of their twin, with their own aliases."""
    return f"twin-{author}"


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class RegistryError(ValueError):
    """A bad name, an unknown version or an unusable source folder."""


@dataclass(frozen=True)
class ModelVersion:
    """One registered model: `path` is a local HF folder loadable by transformers."""

    name: str
    version: int
    path: Path
    manifest: dict[str, Any] = field(hash=False, compare=False)


def _check_name(kind: str, value: str) -> str:
    if not _NAME.match(value):
        raise RegistryError(f"invalid {kind} {value!r}: use letters, digits, '.', '_' or '-'")
    return value


def folder_digest(folder: Path) -> str:
    """SHA-256 over the relative paths and bytes of every file, ignoring the manifest."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        digest.update(path.relative_to(folder).as_posix().encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    from twin_platform.servers.process import exclusive_lock

    with exclusive_lock(path):
        yield


class ModelRegistry:
    """Versioned model folders with aliases. `root` is a folder or an `s3://bucket/prefix` URI."""

    def __init__(self, root: Path | str, cache_dir: Path | str | None = None) -> None:
        root_str = str(root)
        self._s3: _S3Store | None = None
        if root_str.startswith("s3://"):
            cache = (
                Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "twin-model-cache"
            )
            self._s3 = _S3Store(root_str, cache)
            self.root: Path = cache
        else:
            self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelRegistry:
        """The registry configured by TWIN_MODEL_REGISTRY (default: TWIN_HOME/models)."""
        return cls(settings.model_registry_root, cache_dir=settings.models_cache_dir)

    def __repr__(self) -> str:
        return f"ModelRegistry({self._s3.uri if self._s3 else str(self.root)!r})"

    # Reading

    def names(self) -> list[str]:
        if self._s3:
            return self._s3.names()
        return sorted(p.name for p in self.root.iterdir() if (p / "versions").is_dir())

    def versions(self, name: str) -> list[ModelVersion]:
        """Every complete version of `name`, oldest first (empty if the name is unknown)."""
        _check_name("model name", name)
        if self._s3:
            return [self._s3.fetch(name, n) for n in self._s3.version_numbers(name)]
        folder = self.root / name / "versions"
        if not folder.is_dir():
            return []
        numbers = sorted(
            int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / MANIFEST).is_file()
        )
        return [self._local_version(name, n) for n in numbers]

    def get(self, name: str, version: int) -> ModelVersion:
        _check_name("model name", name)
        if self._s3:
            if version not in self._s3.version_numbers(name):
                raise RegistryError(f"model {name!r} has no version {version}")
            return self._s3.fetch(name, version)
        if not (self.root / name / "versions" / str(version) / MANIFEST).is_file():
            raise RegistryError(f"model {name!r} has no version {version}")
        return self._local_version(name, version)

    def aliases(self, name: str) -> dict[str, int]:
        _check_name("model name", name)
        if self._s3:
            return {k: int(v) for k, v in (self._s3.read_json(name, "aliases.json") or {}).items()}
        path = self.root / name / "aliases.json"
        return (
            {k: int(v) for k, v in json.loads(path.read_text()).items()} if path.is_file() else {}
        )

    def resolve(self, name: str, alias: str = PRODUCTION) -> ModelVersion | None:
        """The version behind `alias`, or None when the model or the alias does not exist yet."""
        version = self.aliases(name).get(_check_name("alias", alias))
        return None if version is None else self.get(name, version)

    # Writing

    def register(
        self, source_dir: Path | str, *, name: str, manifest: dict[str, Any]
    ) -> ModelVersion:
        """Copy `source_dir` (an HF folder) in as the next version; identical weights are not duplicated."""
        _check_name("model name", name)
        source = Path(source_dir)
        if not (source / "config.json").is_file():
            raise RegistryError(f"{source} is not a Hugging Face model folder (no config.json)")
        digest = folder_digest(source)
        with _locked(self.root / ".locks" / f"{name}.lock"):
            manifests = self._manifests(name)
            for number, existing in manifests.items():
                if existing.get("sha256") == digest:
                    return self.get(name, number)
            version = max(manifests, default=0) + 1
            full_manifest = {
                **manifest,
                "name": name,
                "version": version,
                "sha256": digest,
                "registered_at": datetime.now(UTC).isoformat(),
            }
            if self._s3:
                self._s3.upload(source, name, version, full_manifest)
                return self._s3.fetch(name, version)
            with publishing(self.root / name / "versions" / str(version)) as staging:
                shutil.copytree(source, staging, dirs_exist_ok=True)
                (staging / MANIFEST).write_text(json.dumps(full_manifest, indent=2, default=str))
            return self._local_version(name, version)

    def set_alias(
        self, name: str, alias: str, version: int, reason: str = "", forced: bool = False
    ) -> ModelVersion:
        """Point `alias` at `version` (which must exist) and record the move; returns that version."""
        _check_name("alias", alias)
        target = self.get(name, version)
        with _locked(self.root / ".locks" / f"{name}.lock"):
            aliases = self.aliases(name)
            move = {
                "alias": alias,
                "version": version,
                "previous": aliases.get(alias),
                "at": datetime.now(UTC).isoformat(),
                "reason": reason,
                "forced": forced,
            }
            aliases[alias] = version
            self._write_json(name, "aliases.json", aliases)
            self._write_json(name, HISTORY, [*self.history(name), move])
        return target

    def history(self, name: str) -> list[dict[str, Any]]:
        """Every alias move of `name`, oldest first."""
        _check_name("model name", name)
        if self._s3:
            return self._s3.read_json(name, HISTORY) or []
        path = self.root / name / HISTORY
        return json.loads(path.read_text()) if path.is_file() else []

    def rollback(self, name: str, alias: str = PRODUCTION) -> ModelVersion:
        """Point `alias` back at the version it held before its last move."""
        moves = [m for m in self.history(name) if m["alias"] == alias]
        if not moves or moves[-1]["previous"] is None:
            raise RegistryError(f"{name}: {alias} has no earlier version to roll back to")
        return self.set_alias(name, alias, int(moves[-1]["previous"]), reason="rollback")

    def _write_json(self, name: str, file: str, value: Any) -> None:
        text = json.dumps(value, indent=2, sort_keys=True, default=str)
        if self._s3:
            self._s3.write_json(name, file, text)
        else:
            write_atomic(self.root / name / file, text)

    def _manifests(self, name: str) -> dict[int, dict[str, Any]]:
        """Every complete version's manifest, without downloading weights."""
        if self._s3:
            return {n: self._s3.manifest(name, n) for n in self._s3.version_numbers(name)}
        return {v.version: v.manifest for v in self.versions(name)}

    def _local_version(self, name: str, version: int) -> ModelVersion:
        path = self.root / name / "versions" / str(version)
        return ModelVersion(name, version, path, json.loads((path / MANIFEST).read_text()))


class _S3Store:
    """The same layout in S3; versions are downloaded once into a local cache for loading."""

    def __init__(self, uri: str, cache: Path) -> None:
        import boto3

        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        self.uri, self.bucket, self.prefix = uri, bucket, prefix.strip("/")
        self.cache = cache
        self.client = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)

    def _key(self, *parts: object) -> str:
        return "/".join([p for p in [self.prefix] if p] + [str(part) for part in parts])

    def _list(self, prefix: str, delimiter: str = "/") -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        yield from paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter=delimiter)

    def names(self) -> list[str]:
        prefix = self._key("") if self.prefix else ""
        found = [
            p["Prefix"][len(prefix) :].strip("/")
            for page in self._list(prefix)
            for p in page.get("CommonPrefixes", [])
        ]
        return sorted(found)

    def version_numbers(self, name: str) -> list[int]:
        numbers = []
        for page in self._list(self._key(name, "versions", "")):
            for obj in page.get("CommonPrefixes", []):
                n = obj["Prefix"].rstrip("/").rsplit("/", 1)[-1]
                if n.isdigit() and self._exists(self._key(name, "versions", n, MANIFEST)):
                    numbers.append(int(n))
        return sorted(numbers)

    def _exists(self, key: str) -> bool:
        return "Contents" in self.client.list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1)

    def upload(self, source: Path, name: str, version: int, manifest: dict[str, Any]) -> None:
        for path in sorted(p for p in source.rglob("*") if p.is_file() and p.name != MANIFEST):
            key = self._key(name, "versions", version, path.relative_to(source).as_posix())
            self.client.upload_file(str(path), self.bucket, key)
        body = json.dumps(manifest, indent=2, default=str).encode()
        self.client.put_object(
            Bucket=self.bucket, Key=self._key(name, "versions", version, MANIFEST), Body=body
        )

    def fetch(self, name: str, version: int) -> ModelVersion:
        local = self.cache / name / "versions" / str(version)
        if not (local / MANIFEST).is_file():
            prefix = self._key(name, "versions", version, "")
            with publishing(local, replace=True) as staging:
                for page in self._list(prefix, delimiter=""):
                    for obj in page.get("Contents", []):
                        target = staging / obj["Key"][len(prefix) :]
                        target.parent.mkdir(parents=True, exist_ok=True)
                        self.client.download_file(self.bucket, obj["Key"], str(target))
        return ModelVersion(name, version, local, json.loads((local / MANIFEST).read_text()))

    def manifest(self, name: str, version: int) -> dict[str, Any]:
        key = self._key(name, "versions", version, MANIFEST)
        return json.loads(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def read_json(self, name: str, file: str) -> Any:
        """The JSON object stored at `name/file`, or None."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(name, file))["Body"]
        except self.client.exceptions.NoSuchKey:
            return None
        return json.loads(body.read())

    def write_json(self, name: str, file: str, text: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(name, file), Body=text.encode())
