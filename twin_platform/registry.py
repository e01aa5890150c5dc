"""The model registry: immutable, numbered model versions with a manifest, and movable aliases.

Layout under the root (a local folder by default, `s3://bucket/prefix` by configuration)::

    <name>/versions/<n>/         an HF folder (merged weights, tokenizer) + manifest.json
    <name>/aliases.json          {"candidate": 3, "production": 2}
    <name>/alias_history.json    every alias move, for `rollback`
    <name>/claims/<n>.json       (S3 only) who took version number n

A version is written to a temporary folder and renamed into place (locally) or has its manifest
uploaded last (S3), so a crash never leaves a half-written version visible. Locally a file lock
serialises writers; on S3, shared by many hosts, conditional writes do (see `_S3Store`).
Registering the same weights twice returns the existing version instead of a duplicate.
Training registers new versions as `candidate`; evaluation promotes one to `production`, which
the API serves.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
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


def _version_manifest(
    manifest: dict[str, Any], name: str, version: int, digest: str
) -> dict[str, Any]:
    return {
        **manifest,
        "name": name,
        "version": version,
        "sha256": digest,
        "registered_at": datetime.now(UTC).isoformat(),
    }


def _alias_move(
    alias: str, version: int, previous: int | None, reason: str, forced: bool
) -> dict[str, Any]:
    """One entry of the alias history: what `rollback` reads."""
    return {
        "alias": alias,
        "version": version,
        "previous": previous,
        "at": datetime.now(UTC).isoformat(),
        "reason": reason,
        "forced": forced,
    }


def _json_text(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


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
        if self._s3:
            return self._s3.register(source, name, manifest, digest)
        with _locked(self.root / ".locks" / f"{name}.lock"):
            manifests = self._manifests(name)
            for number, existing in manifests.items():
                if existing.get("sha256") == digest:
                    return self.get(name, number)
            version = max(manifests, default=0) + 1
            full_manifest = _version_manifest(manifest, name, version, digest)
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
        if self._s3:
            self._s3.move_alias(name, alias, version, reason, forced)
            return target
        with _locked(self.root / ".locks" / f"{name}.lock"):
            aliases = self.aliases(name)
            move = _alias_move(alias, version, aliases.get(alias), reason, forced)
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
        write_atomic(self.root / name / file, _json_text(value))

    def _manifests(self, name: str) -> dict[int, dict[str, Any]]:
        return {v.version: v.manifest for v in self.versions(name)}

    def _local_version(self, name: str, version: int) -> ModelVersion:
        path = self.root / name / "versions" / str(version)
        return ModelVersion(name, version, path, json.loads((path / MANIFEST).read_text()))


class _S3Store:
    """The same layout in S3, shared by many hosts with no lock between them:

    - a version number is taken by creating `<name>/claims/<n>.json` with `If-None-Match: *`,
      which exactly one writer can do; a number that has any object under `versions/<n>/` (files
      of an upload from before claims) is never taken either;
    - the manifest is written last, create-only, and readers list only versions that have one, so
      a crashed upload is never visible and its files never mix into another version;
    - `aliases.json` and the alias history are updated by compare-and-swap on their ETag
      (`If-Match`), retried on conflict, so concurrent moves are all kept.

    A server that ignores conditional writes is refused before the first registration. Versions
    are downloaded once into a local cache for loading.
    """

    def __init__(self, uri: str, cache: Path) -> None:
        import boto3

        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        self.uri, self.bucket, self.prefix = uri, bucket, prefix.strip("/")
        self.cache = cache
        self.client = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)
        self._conditional_writes_checked = False

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

    def _folder_numbers(self, name: str) -> list[int]:
        """Numbers with any object under `versions/<n>/`, complete or not."""
        numbers = []
        for page in self._list(self._key(name, "versions", "")):
            for obj in page.get("CommonPrefixes", []):
                n = obj["Prefix"].rstrip("/").rsplit("/", 1)[-1]
                if n.isdigit():
                    numbers.append(int(n))
        return numbers

    def version_numbers(self, name: str) -> list[int]:
        """Complete versions only: those whose manifest was written."""
        return sorted(
            n
            for n in self._folder_numbers(name)
            if self._exists(self._key(name, "versions", n, MANIFEST))
        )

    def _exists(self, key: str) -> bool:
        return "Contents" in self.client.list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1)

    def register(
        self, source: Path, name: str, manifest: dict[str, Any], digest: str
    ) -> ModelVersion:
        for number in self.version_numbers(name):
            if self.manifest(name, number).get("sha256") == digest:
                return self.fetch(name, number)
        version = self._claim(name, digest)
        self.upload(source, name, version, _version_manifest(manifest, name, version, digest))
        return self.fetch(name, version)

    def _claim(self, name: str, digest: str) -> int:
        """Take the next unused version number; a number another host took first is skipped."""
        self._check_conditional_writes()
        claimed = [
            int(obj["Key"].rsplit("/", 1)[-1].removesuffix(".json"))
            for page in self._list(self._key(name, "claims", ""))
            for obj in page.get("Contents", [])
            if obj["Key"].rsplit("/", 1)[-1].removesuffix(".json").isdigit()
        ]
        version = max([*claimed, *self._folder_numbers(name)], default=0) + 1
        claim = {"sha256": digest, "host": socket.gethostname(), "pid": os.getpid()}
        body = _json_text({**claim, "at": datetime.now(UTC).isoformat()}).encode()
        while True:
            key = self._key(name, "claims", f"{version}.json")
            try:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*")
                return version
            except self.client.exceptions.ClientError as exc:
                status = _http_status(exc)
                if status == 412:  # taken: try the next number
                    version += 1
                elif status != 409:  # 409: a concurrent conditional write; try this one again
                    raise

    def _check_conditional_writes(self) -> None:
        """Version claims are only exclusive if the server honours If-None-Match: a second
        create-only write of the same probe object must be refused."""
        if self._conditional_writes_checked:
            return
        for _ in range(2):
            try:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self._key(".conditional-write-probe"),
                    Body=b"",
                    IfNoneMatch="*",
                )
            except self.client.exceptions.ClientError as exc:
                if _http_status(exc) not in (409, 412):
                    raise
                self._conditional_writes_checked = True
                return
        raise RegistryError(
            f"{self.uri}: this S3 server ignores If-None-Match, so two hosts could register the"
            " same version; use AWS S3 or a server with conditional writes (e.g. MinIO)"
        )

    def upload(self, source: Path, name: str, version: int, manifest: dict[str, Any]) -> None:
        for path in sorted(p for p in source.rglob("*") if p.is_file() and p.name != MANIFEST):
            key = self._key(name, "versions", version, path.relative_to(source).as_posix())
            self.client.upload_file(str(path), self.bucket, key)
        body = json.dumps(manifest, indent=2, default=str).encode()
        key = self._key(name, "versions", version, MANIFEST)
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*")

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

    def update_json(self, name: str, file: str, change: Callable[[Any], Any]) -> None:
        """Replace the JSON object at `name/file` (None when absent) by `change(current)`, unless
        another writer replaced it since it was read: then read again and retry."""
        key = self._key(name, file)
        while True:
            try:
                stored = self.client.get_object(Bucket=self.bucket, Key=key)
                current, condition = json.loads(stored["Body"].read()), {"IfMatch": stored["ETag"]}
            except self.client.exceptions.NoSuchKey:
                current, condition = None, {"IfNoneMatch": "*"}
            body = _json_text(change(current)).encode()
            try:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **condition)
                return
            except self.client.exceptions.ClientError as exc:
                if _http_status(exc) not in (409, 412):
                    raise

    def move_alias(self, name: str, alias: str, version: int, reason: str, forced: bool) -> None:
        """Point the alias, then append the move to the history, each by compare-and-swap."""
        previous: list[int | None] = [None]

        def point(aliases: dict[str, int] | None) -> dict[str, int]:
            previous[0] = (aliases or {}).get(alias)
            return {**(aliases or {}), alias: version}

        self.update_json(name, "aliases.json", point)
        move = _alias_move(alias, version, previous[0], reason, forced)
        self.update_json(name, HISTORY, lambda moves: [*(moves or []), move])


def _http_status(exc: Exception) -> int | None:
    """The HTTP status of a botocore ClientError."""
    return getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
