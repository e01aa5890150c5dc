"""One API serving every author's twin: deployments, model ids, a bounded set of loaded models, and
switching a deployment under traffic without a failed request."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rag_fixtures import load_corpus, start_server

from twin_platform.llm.local import bundled_gguf_path
from twin_platform.serving.deployments import Deployment, DeploymentStore
from twin_platform.serving.endpoint import DeployError, deploy
from twin_platform.settings import load_settings
from twin_platform.storage.postgres import connect

AUTHORS = ("rhea-vance", "bob-stone")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two copies of the bundled GGUF, standing in for two versions of a quantized twin."""
    folder = tmp_path_factory.mktemp("gguf")
    for version in (1, 2):
        shutil.copy(bundled_gguf_path(), folder / f"v{version}.gguf")
    (folder / "broken.gguf").write_bytes(b"not a model")
    return folder


@pytest.fixture(scope="module")
def store(twin_home: Path, models_dir: Path) -> DeploymentStore:
    store = DeploymentStore(load_settings().deployments_dir)
    for author in AUTHORS:
        store.record(deployment(author, 1, models_dir))
    return store


def deployment(author: str, version: int, models_dir: Path, file: str | None = None) -> Deployment:
    gguf = models_dir / (file or f"v{version}.gguf")
    return Deployment(author, f"twin-{author}", version, str(gguf), str(models_dir))


@pytest.fixture(scope="module")
def api(postgres_url: str, store: DeploymentStore) -> Iterator[str]:
    from twin_platform.api.app import create_app

    load_corpus(postgres_url)
    settings = load_settings(serve_max_loaded_models=1, gen_max_tokens=6, api_max_new_tokens=16)
    url, server, thread = start_server(create_app(settings, preload_model=False))
    yield url
    server.should_exit = True
    thread.join(timeout=30)


def test_every_deployed_author_has_a_model(api: str) -> None:
    models = httpx.get(f"{api}/v1/models").json()["data"]
    assert [m["id"] for m in models] == ["base", "twin-bob-stone", "twin-rhea-vance"]
    assert {m["author"] for m in models} == {None, *AUTHORS}
    assert all(m["version"] for m in models)


def test_the_model_picks_the_author_and_filters_retrieval(api: str) -> None:
    for author in AUTHORS:
        body = {
            "model": f"twin-{author}",
            "messages": [{"role": "user", "content": "What do you write about?"}],
            "max_tokens": 6,
            "temperature": 0,
        }
        answer = httpx.post(f"{api}/v1/chat/completions", json=body, timeout=120).json()
        assert answer["sources"] and {s["author"] for s in answer["sources"]} == {author}
    rag = httpx.post(
        f"{api}/rag", json={"query": "sourdough starter", "author": "rhea-vance"}, timeout=120
    ).json()
    assert rag["model"] == "twin-rhea-vance:1"
    assert set(rag["cited"]) <= {s["source_url"] for s in rag["sources"]}
    unknown = httpx.post(
        f"{api}/v1/chat/completions",
        json={"model": "twin-nobody", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found"


def test_the_base_model_answers_with_an_authors_sources(api: str, postgres_url: str) -> None:
    """`model: base` with `author`: the untuned model, grounded in that author's writing (for
    comparing a twin with its base on the same retrieval)."""
    body = {
        "model": "base",
        "author": "bob-stone",
        "messages": [{"role": "user", "content": "What do you write about?"}],
        "max_tokens": 6,
        "temperature": 0,
    }
    answer = httpx.post(f"{api}/v1/chat/completions", json=body, timeout=120).json()
    assert answer["sources"] and {s["author"] for s in answer["sources"]} == {"bob-stone"}
    trace_id = answer["id"].removeprefix("chatcmpl-")
    deadline = time.monotonic() + 10
    row = None
    while row is None:  # traces are written in the background
        assert time.monotonic() < deadline, "the trace was not written"
        with connect(postgres_url) as conn:
            row = conn.execute(
                "SELECT model_version FROM traces WHERE trace_id = %s", (trace_id,)
            ).fetchone()
        time.sleep(0.1)
    assert row[0].startswith("base:"), row


def served_version(api: str, author: str) -> str:
    body = {"query": "migrations", "author": author, "max_tokens": 2, "generate": True}
    return str(httpx.post(f"{api}/rag", json=body, timeout=120).json()["model"])


def test_a_record_written_without_the_api_is_served_within_the_poll(
    api: str, store: DeploymentStore, models_dir: Path
) -> None:
    """What docker compose's runs do (they hold no API key): write the record, and the API
    switches by itself; a record whose model cannot load leaves the old one serving."""
    assert served_version(api, "bob-stone") == "twin-bob-stone:1"
    store.record(deployment("bob-stone", 2, models_dir))
    deadline = time.monotonic() + 30
    while served_version(api, "bob-stone") != "twin-bob-stone:2":
        assert time.monotonic() < deadline, "the API did not pick up the new record"
        time.sleep(0.5)
    store.record(deployment("bob-stone", 3, models_dir, file="broken.gguf"))
    time.sleep(12)  # two polls
    assert served_version(api, "bob-stone") == "twin-bob-stone:2"
    store.record(deployment("bob-stone", 1, models_dir))  # as the module's other tests expect


def test_a_deployment_switches_under_traffic_without_failures(
    api: str, store: DeploymentStore, models_dir: Path
) -> None:
    failures: list[str] = []
    served: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            response = httpx.post(
                f"{api}/rag",
                json={"query": "migrations", "author": "rhea-vance", "max_tokens": 4},
                timeout=120,
            )
            if response.status_code != 200:
                failures.append(f"{response.status_code} {response.text[:100]}")
            else:
                served.append(response.json()["model"])
            time.sleep(max(0.0, 0.1 - (time.perf_counter() - started)))  # about 10 requests/s

    clients = [threading.Thread(target=traffic) for _ in range(2)]
    for client in clients:
        client.start()
    time.sleep(2)
    report = deploy(store, deployment("rhea-vance", 2, models_dir), api, None)
    time.sleep(2)
    stop.set()
    for client in clients:
        client.join()
    assert not failures, failures[:5]
    assert report.load_s is not None and report.smoke_answer is not None
    assert served[0] == "twin-rhea-vance:1" and served[-1] == "twin-rhea-vance:2"


def test_a_model_that_fails_to_load_is_not_switched_in(
    api: str, store: DeploymentStore, models_dir: Path
) -> None:
    before = store.get("bob-stone")
    with pytest.raises(DeployError, match="not switched in"):
        deploy(store, deployment("bob-stone", 3, models_dir, file="broken.gguf"), api, None)
    assert store.get("bob-stone") == before  # the record names what the API still serves
    body = {"query": "running", "author": "bob-stone", "max_tokens": 4}
    assert httpx.post(f"{api}/rag", json=body, timeout=120).json()["model"] == "twin-bob-stone:1"
