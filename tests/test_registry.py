"""The model registry on local disk and on S3: versions, manifests, aliases, idempotence, crash
safety, and several hosts writing at once."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from twin_platform.registry import (
    CANDIDATE,
    PRODUCTION,
    ModelRegistry,
    ModelVersion,
    RegistryError,
    folder_digest,
)
from twin_platform.settings import load_settings


def hf_folder(path: Path, weights: bytes) -> Path:
    """A minimal model folder: the registry only needs config.json to accept it."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (path / "model.safetensors").write_bytes(weights)
    (path / "sub").mkdir()
    (path / "sub" / "extra.txt").write_text("nested files are copied too")
    return path


def test_register_versions_and_aliases(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    assert registry.versions("twin") == []
    assert registry.resolve("twin") is None

    v1 = registry.register(
        hf_folder(tmp_path / "a", b"one"), name="twin", manifest={"stage": "sft"}
    )
    v2 = registry.register(
        hf_folder(tmp_path / "b", b"two"), name="twin", manifest={"stage": "dpo"}
    )
    assert (v1.version, v2.version) == (1, 2)
    assert isinstance(v1, ModelVersion)
    assert (v2.path / "model.safetensors").read_bytes() == b"two"
    assert (v2.path / "sub" / "extra.txt").is_file()
    manifest = json.loads((v2.path / "manifest.json").read_text())
    assert manifest["stage"] == "dpo" and manifest["version"] == 2 and len(manifest["sha256"]) == 64
    assert [v.version for v in registry.versions("twin")] == [1, 2]
    assert registry.names() == ["twin"]

    registry.set_alias("twin", CANDIDATE, 2)
    registry.set_alias("twin", PRODUCTION, 1)
    assert registry.resolve("twin", CANDIDATE) == v2
    production = registry.resolve("twin")
    assert (
        production is not None and production.version == 1 and production.manifest["stage"] == "sft"
    )
    registry.set_alias("twin", PRODUCTION, 2)
    assert registry.aliases("twin") == {CANDIDATE: 2, PRODUCTION: 2}

    # A fresh handle on the same root sees the same state (the API process does this).
    assert ModelRegistry(tmp_path / "models").resolve("twin") == v2


def test_same_weights_register_once(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    first = registry.register(hf_folder(tmp_path / "a", b"same"), name="twin", manifest={"run": 1})
    again = registry.register(hf_folder(tmp_path / "b", b"same"), name="twin", manifest={"run": 2})
    assert again == first and again.manifest["run"] == 1
    assert len(registry.versions("twin")) == 1


def test_bad_input_is_refused(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RegistryError, match=r"config\.json"):
        registry.register(tmp_path / "empty", name="twin", manifest={})
    with pytest.raises(RegistryError, match="invalid model name"):
        registry.register(hf_folder(tmp_path / "a", b"x"), name="../escape", manifest={})
    with pytest.raises(RegistryError, match="no version 7"):
        registry.set_alias("twin", PRODUCTION, 7)
    assert registry.versions("twin") == []


def test_incomplete_version_is_invisible(tmp_path: Path) -> None:
    """A folder without manifest (a crash mid-copy) is neither listed nor reused as a number."""
    registry = ModelRegistry(tmp_path / "models")
    (tmp_path / "models" / "twin" / "versions" / ".1-crashed").mkdir(parents=True)
    assert registry.versions("twin") == []
    v = registry.register(hf_folder(tmp_path / "a", b"w"), name="twin", manifest={})
    assert v.version == 1 and registry.versions("twin") == [v]


def test_concurrent_registers_get_distinct_versions(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    sources = [hf_folder(tmp_path / f"s{i}", f"weights {i}".encode()) for i in range(4)]
    results: list[ModelVersion] = []
    threads = [
        threading.Thread(
            target=lambda s=s: results.append(
                ModelRegistry(tmp_path / "models").register(s, name="twin", manifest={})
            )
        )
        for s in sources
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(v.version for v in results) == [1, 2, 3, 4]
    assert len(registry.versions("twin")) == 4


def test_from_settings_defaults_under_twin_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWIN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TWIN_MODEL_REGISTRY", raising=False)
    assert (
        ModelRegistry.from_settings(load_settings()).root
        == (tmp_path / "home" / "models").resolve()
    )
    monkeypatch.setenv("TWIN_MODEL_REGISTRY", str(tmp_path / "elsewhere"))
    assert ModelRegistry.from_settings(load_settings()).root == (tmp_path / "elsewhere").resolve()


@pytest.fixture
def s3_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A registry root on a real S3 API server (moto's, over HTTP on 127.0.0.1)."""
    import boto3
    from moto.server import ThreadedMotoServer

    from twin_platform.servers.process import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    # Moto keeps its state per process, not per server: start each test from an empty one.
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))
    try:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
        }.items():
            monkeypatch.setenv(name, value)
        boto3.client("s3").create_bucket(Bucket="models")
        yield "s3://models/twin-platform"
    finally:
        server.stop()


def test_s3_registry_round_trip(s3_root: str, tmp_path: Path) -> None:
    """The same API against an S3 server: versions, manifests, aliases, history, cache."""
    registry = ModelRegistry(s3_root, cache_dir=tmp_path / "cache")
    v1 = registry.register(
        hf_folder(tmp_path / "a", b"one"), name="twin", manifest={"stage": "sft"}
    )
    registry.set_alias("twin", PRODUCTION, v1.version)
    again = registry.register(hf_folder(tmp_path / "b", b"one"), name="twin", manifest={})
    assert again.version == 1  # same weights: no duplicate upload

    other = ModelRegistry(s3_root, cache_dir=tmp_path / "other-cache")
    served = other.resolve("twin")
    assert served is not None and served.version == 1 and served.manifest["stage"] == "sft"
    assert (served.path / "model.safetensors").read_bytes() == b"one"
    assert (served.path / "sub" / "extra.txt").is_file()
    assert other.names() == ["twin"] and [v.version for v in other.versions("twin")] == [1]

    v2 = other.register(hf_folder(tmp_path / "c", b"two"), name="twin", manifest={})
    other.set_alias("twin", PRODUCTION, v2.version, reason="better")
    served = registry.resolve("twin")
    assert served is not None and served.version == v2.version
    assert [(m["previous"], m["version"]) for m in registry.history("twin")] == [(None, 1), (1, 2)]
    assert registry.rollback("twin").version == 1
    assert other.aliases("twin") == {PRODUCTION: 1}


def test_the_s3_server_honours_conditional_writes(s3_root: str) -> None:
    """The registry's guarantees rest on If-None-Match: * and If-Match; moto implements both."""
    import boto3
    from botocore.exceptions import ClientError

    s3 = boto3.client("s3")
    first = s3.put_object(Bucket="models", Key="probe", Body=b"a", IfNoneMatch="*")
    with pytest.raises(ClientError, match="PreconditionFailed"):
        s3.put_object(Bucket="models", Key="probe", Body=b"b", IfNoneMatch="*")
    with pytest.raises(ClientError, match="PreconditionFailed"):
        s3.put_object(Bucket="models", Key="probe", Body=b"b", IfMatch='"stale"')
    s3.put_object(Bucket="models", Key="probe", Body=b"c", IfMatch=first["ETag"])


def test_s3_hosts_registering_at_once_get_distinct_versions(s3_root: str, tmp_path: Path) -> None:
    """Each registry has its own cache (its own machine): no local lock is shared."""
    sources = [hf_folder(tmp_path / f"s{i}", f"weights {i}".encode() * 1000) for i in range(4)]
    results: dict[int, ModelVersion] = {}
    start = threading.Barrier(len(sources))

    def register(i: int) -> None:
        registry = ModelRegistry(s3_root, cache_dir=tmp_path / f"host-{i}")
        start.wait()
        results[i] = registry.register(sources[i], name="twin", manifest={"host": i})

    threads = [threading.Thread(target=register, args=(i,)) for i in range(len(sources))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(v.version for v in results.values()) == [1, 2, 3, 4]
    reader = ModelRegistry(s3_root, cache_dir=tmp_path / "reader")
    for i, version in results.items():
        fetched = reader.get("twin", version.version)
        assert fetched.manifest["host"] == i
        assert (fetched.path / "model.safetensors").read_bytes() == f"weights {i}".encode() * 1000
        assert folder_digest(fetched.path) == fetched.manifest["sha256"]


def test_s3_upload_that_never_finished_is_invisible_and_never_reused(
    s3_root: str, tmp_path: Path
) -> None:
    """Files of a crashed upload (no manifest) stay out of listings and out of the next version."""
    import boto3

    s3 = boto3.client("s3")
    for file, body in {"model.safetensors": b"half a mod", "stale.bin": b"from the crash"}.items():
        s3.put_object(Bucket="models", Key=f"twin-platform/twin/versions/1/{file}", Body=body)
    registry = ModelRegistry(s3_root, cache_dir=tmp_path / "cache")
    assert registry.versions("twin") == []

    version = registry.register(hf_folder(tmp_path / "a", b"whole"), name="twin", manifest={})
    assert version.version == 2 and not (version.path / "stale.bin").exists()
    assert [v.version for v in registry.versions("twin")] == [2]
    with pytest.raises(RegistryError, match="no version 1"):
        registry.get("twin", 1)


def test_s3_alias_moves_from_many_hosts_are_all_kept(s3_root: str, tmp_path: Path) -> None:
    registry = ModelRegistry(s3_root, cache_dir=tmp_path / "cache")
    for i in range(2):
        registry.register(hf_folder(tmp_path / f"v{i}", f"w{i}".encode()), name="twin", manifest={})
    start = threading.Barrier(4)

    def move(host: int) -> None:
        mine = ModelRegistry(s3_root, cache_dir=tmp_path / f"host-{host}")
        start.wait()
        for i in range(3):
            mine.set_alias("twin", f"alias-{host}", 1 + (i % 2), reason=f"host {host}")

    threads = [threading.Thread(target=move, args=(host,)) for host in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert registry.aliases("twin") == {f"alias-{host}": 1 for host in range(4)}
    history = registry.history("twin")
    assert len(history) == 12
    for host in range(4):
        moves = [m for m in history if m["alias"] == f"alias-{host}"]
        assert [(m["previous"], m["version"]) for m in moves] == [(None, 1), (1, 2), (2, 1)]
