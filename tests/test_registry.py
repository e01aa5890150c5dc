"""The model registry on local disk: versions, manifests, aliases, idempotence, crash safety."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from twin_platform.registry import CANDIDATE, PRODUCTION, ModelRegistry, ModelVersion, RegistryError
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


def test_s3_registry_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same API against an S3 server (moto's, in-process): versions, manifests, aliases, cache."""
    import boto3
    from moto.server import ThreadedMotoServer

    from twin_platform.servers.process import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        }.items():
            monkeypatch.setenv(name, value)
        boto3.client("s3").create_bucket(Bucket="models")
        registry = ModelRegistry("s3://models/twin-platform", cache_dir=tmp_path / "cache")
        v1 = registry.register(
            hf_folder(tmp_path / "a", b"one"), name="twin", manifest={"stage": "sft"}
        )
        registry.set_alias("twin", PRODUCTION, v1.version)
        again = registry.register(hf_folder(tmp_path / "b", b"one"), name="twin", manifest={})
        assert again.version == 1  # same weights: no duplicate upload

        other = ModelRegistry("s3://models/twin-platform", cache_dir=tmp_path / "other-cache")
        served = other.resolve("twin")
        assert served is not None and served.version == 1 and served.manifest["stage"] == "sft"
        assert (served.path / "model.safetensors").read_bytes() == b"one"
        assert (served.path / "sub" / "extra.txt").is_file()
        assert other.names() == ["twin"] and [v.version for v in other.versions("twin")] == [1]
    finally:
        server.stop()
