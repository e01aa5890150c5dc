"""The API over real HTTP (uvicorn in a thread) against the real Postgres, embedding model and SmolLM2.

Covers auth (401), size and limit errors (413/422), rate limits (429), the OpenAI SDK against /v1
(plain and streamed), /rag with and without streaming, feedback, tracing, and schemathesis fuzzing of
the OpenAPI spec (no 500s).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from rag_fixtures import load_corpus, start_server
from schemathesis.checks import not_a_server_error

from twin_platform.settings import load_settings
from twin_platform.storage.postgres import connect

KEY = "test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_BODY = 8192


@pytest.fixture(scope="module")
def corpus(postgres_url: str) -> dict[str, str]:
    return load_corpus(postgres_url)


@pytest.fixture(scope="module")
def api_url(corpus: dict[str, str]) -> Iterator[str]:
    from twin_platform.api.app import create_app

    app_settings = load_settings(
        api_keys=f"{KEY}, second-key",
        api_max_body_bytes=MAX_BODY,
        api_rate_limit_per_minute=100_000,
        api_max_k=10,
        api_max_new_tokens=8,  # keeps fuzzed generation requests short on CPU
        gen_max_tokens=8,
    )
    url, server, thread = start_server(create_app(app_settings))
    yield url
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def client(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=120) as http:
        yield http


def trace_row(postgres_url: str, trace_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:  # traces are written in the background
        with connect(postgres_url) as conn:
            cur = conn.execute("SELECT * FROM traces WHERE trace_id = %s", (trace_id,))
            row = cur.fetchone()
            if row is not None:
                return dict(zip([c.name for c in cur.description], row, strict=True))
        assert time.monotonic() < deadline, f"trace {trace_id} was not written"
        time.sleep(0.2)


def test_health_and_ready(client: httpx.Client) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    deadline = time.monotonic() + 120
    while (ready := client.get("/ready")).status_code != 200:  # not ready while the model loads
        assert ready.json()["reason"] == "model loading" and time.monotonic() < deadline
        time.sleep(0.5)
    assert ready.json()["database"] is True and ready.json()["generation_model"] is True
    assert ready.json()["model"].startswith("base:SmolLM2")


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}]
)
def test_bad_keys_get_401(client: httpx.Client, headers: dict[str, str]) -> None:
    for method, path, body in [("POST", "/rag", {"query": "hi"}), ("GET", "/v1/models", None)]:
        response = client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["type"] == "authentication_error"
    assert (
        client.get("/v1/models", headers={"Authorization": "Bearer second-key"}).status_code == 200
    )


def test_oversized_and_invalid_requests(client: httpx.Client) -> None:
    big = {"query": "x" * (MAX_BODY + 10)}
    assert client.post("/rag", json=big, headers=AUTH).status_code == 413

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
        yield b'{"query": "'
        for _ in range(20):
            yield b"y" * 1024
        yield b'"}'

    response = client.post(
        "/rag", content=chunked(), headers=AUTH | {"Content-Type": "application/json"}
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == 413
    cases = [
        {"query": "q" * 4001},  # over the schema's query length, under the body limit
        {"query": ""},
        {"query": "ok", "k": 11},  # over TWIN_API_MAX_K
        {"query": "ok", "k": 0},
        {"query": "ok", "max_tokens": 9},  # over TWIN_API_MAX_NEW_TOKENS
        {"query": "ok", "category": "novels"},
        {"query": "ok", "surprise": 1},
    ]
    for body in cases:
        response = client.post("/rag", json=body, headers=AUTH)
        assert response.status_code == 422, (body, response.text)
        assert "Traceback" not in response.text
    assert client.post("/rag", content=b"{not json", headers=AUTH).status_code == 422
    assert (
        client.post("/feedback", json={"trace_id": "nope", "rating": 1}, headers=AUTH).status_code
        == 422
    )
    assert (
        client.post("/feedback", json={"trace_id": "0" * 32, "rating": 5}, headers=AUTH).status_code
        == 422
    )


def test_retrieve_finds_the_fact_and_is_traced(
    client: httpx.Client, corpus: dict[str, str], postgres_url: str
) -> None:
    response = client.post(
        "/retrieve", json={"query": "What does Rhea Vance feed Gerald?", "k": 2}, headers=AUTH
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["sources"][0]["chunk_id"] == corpus["https://rhea.example/sourdough"]
    assert body["filters"] == {"author": "rhea-vance", "category": None}
    assert len(body["sources"]) == 2 and body["queries"][0] == "What does Rhea Vance feed Gerald?"
    row = trace_row(postgres_url, body["trace_id"])
    assert row["route"] == "/retrieve" and row["author"] == "rhea-vance"
    assert row["retrieved"][0]["chunk_id"] == body["sources"][0]["chunk_id"]
    assert row["api_key_id"].startswith("k_") and KEY not in json.dumps(row, default=str)
    assert {"embed", "search", "rerank", "total"} <= row["latencies_ms"].keys()


def test_rag_answer_feedback_and_trace(
    client: httpx.Client, corpus: dict[str, str], postgres_url: str
) -> None:
    query = "What is the name of Rhea Vance's sourdough starter?"
    response = client.post("/rag", json={"query": query, "k": 2, "temperature": 0}, headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"].strip() and body["model"].startswith("base:")
    assert 0 < body["usage"]["completion_tokens"] <= 8
    assert body["sources"][0]["source_url"] == "https://rhea.example/sourdough"
    row = trace_row(postgres_url, body["trace_id"])
    assert row["answer"] == body["answer"] and "Gerald" in row["prompt"] and row["error"] is None
    assert (
        row["completion_tokens"] == body["usage"]["completion_tokens"]
        and row["model_version"] == body["model"]
    )

    feedback = {
        "trace_id": body["trace_id"],
        "rating": -1,
        "correction": "Gerald, fed with rye flour.",
    }
    created = client.post("/feedback", json=feedback, headers=AUTH)
    assert created.status_code == 201 and created.json()["feedback_id"] > 0
    with connect(postgres_url) as conn:
        stored = conn.execute(
            "SELECT rating, correction FROM feedback WHERE feedback_id = %s",
            (created.json()["feedback_id"],),
        ).fetchone()
    assert stored == (-1, "Gerald, fed with rye flour.")
    unknown = client.post(
        "/feedback",
        json={"trace_id": "00000000-0000-0000-0000-000000000000", "rating": 1},
        headers=AUTH,
    )
    assert unknown.status_code == 404


def test_rag_streams_sources_then_deltas(client: httpx.Client, postgres_url: str) -> None:
    events = []
    body = {"query": "Tell me about Rhea Vance's cycling in winter", "stream": True}
    with client.stream("POST", "/rag", json=body, headers=AUTH) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith(
            "text/event-stream"
        )
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    kinds = [e["type"] for e in events]
    assert kinds[0] == "sources" and kinds[-1] == "done" and "delta" in kinds
    assert events[0]["sources"][0]["source_url"] == "https://rhea.example/cycling"
    text = "".join(e["text"] for e in events if e["type"] == "delta")
    row = trace_row(postgres_url, events[0]["trace_id"])
    assert row["answer"] == text and "first_token" in row["latencies_ms"]


def test_openai_sdk_against_v1(api_url: str) -> None:
    import openai

    sdk = openai.OpenAI(base_url=f"{api_url}/v1", api_key=KEY)
    assert [m.id for m in sdk.models.list()] == ["base"]  # and twin-<author> per deployment
    # "twin" still names the default twin (the base model when no default author is set)
    completion = sdk.chat.completions.create(
        model="twin",
        messages=[{"role": "user", "content": "What flour does Rhea Vance feed her starter?"}],
        max_tokens=8,
        temperature=0,
        extra_body={"k": 2},
    )
    assert completion.choices[0].message.content.strip()
    assert completion.usage.completion_tokens <= 8 and completion.usage.prompt_tokens > 20
    assert completion.model_extra["sources"][0]["source_url"] == "https://rhea.example/sourdough"

    stream = sdk.chat.completions.create(
        model="twin",
        messages=[
            {"role": "system", "content": "ignored: the twin's own system prompt is used"},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi."},
            {"role": "user", "content": "How do you keep migrations safe?"},
        ],
        max_tokens=8,
        stream=True,
    )
    deltas = [
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert "".join(deltas).strip()

    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{api_url}/v1", api_key="wrong").models.list()


def test_rate_limit_cors_and_no_stack_traces(corpus: dict[str, str], postgres_url: str) -> None:
    from fastapi.testclient import TestClient

    from twin_platform.api.app import create_app

    app = create_app(
        load_settings(api_rate_limit_per_minute=60, api_cors_origins="https://twin.example"),
        preload_model=False,
    )
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as http:
        # The bucket holds 10 requests; the 11th within the second is refused.
        statuses = [http.get("/v1/models").status_code for _ in range(11)]
        assert statuses[:10] == [200] * 10 and statuses[10] == 429
        assert int(http.get("/v1/models").headers["retry-after"]) >= 1

        preflight = http.options(
            "/rag",
            headers={"Origin": "https://twin.example", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.headers["access-control-allow-origin"] == "https://twin.example"
        other = http.options(
            "/rag",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in other.headers

        def broken(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("secret internals at /srv/app.py line 3")

        serving = app.state.serving
        serving.limiter.rate = 1000.0  # refill at once: the next call is about errors, not limits
        serving.pipeline.retrieve = broken
        response = http.post("/retrieve", json={"query": "anything"})
        assert response.status_code == 500
        assert response.json() == {
            "error": {
                "message": "internal error",
                "type": "server_error",
                "param": None,
                "code": 500,
            }
        }
        serving.writer.flush()
    with connect(postgres_url) as conn:
        error = conn.execute(
            "SELECT error FROM traces WHERE route = '/retrieve' AND error IS NOT NULL ORDER BY created_at DESC"
        ).fetchone()
    assert error is not None and error[0].startswith("RuntimeError: secret internals")


def test_chat_page_and_openapi(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "<textarea" in page.text and 'fetch("rag"' in page.text
    spec = client.get("/openapi.json").json()
    assert {
        "/rag",
        "/retrieve",
        "/feedback",
        "/v1/chat/completions",
        "/v1/models",
        "/health",
        "/ready",
    } <= set(spec["paths"])
    assert client.get("/docs").status_code == 200


def test_fuzzed_requests_never_get_500(api_url: str) -> None:
    """Schemathesis generates valid and invalid requests for every operation of the OpenAPI spec.

    (Its pytest plugin does not load under pytest 9, so the operations are driven with hypothesis.)
    """
    from hypothesis import given

    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def check(case: Any) -> None:
            case.call_and_validate(
                base_url=api_url, headers=AUTH, checks=[not_a_server_error], timeout=120
            )

        check()


@pytest.mark.parametrize(
    ("query", "author"),
    [("how do you keep migrations safe", "rhea-vance"), ("sourdough starter", "rhea-vance")],
)
def test_twin_search_returns_what_retrieve_returns(
    client: httpx.Client, query: str, author: str
) -> None:
    """The CLI and the API share one retrieval path: same chunk ids, same order."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    api = client.post("/retrieve", json={"query": query, "author": author, "k": 4}, headers=AUTH)
    assert api.status_code == 200
    api_ids = [source["chunk_id"] for source in api.json()["sources"]]
    printed = subprocess.run(
        [str(Path(sys.executable).parent / "twin"), "search", query, "--author", author, "-k", "4"],
        capture_output=True,
        text=True,
        env=os.environ | {"COLUMNS": "250"},
        timeout=300,
    )
    assert printed.returncode == 0, printed.stderr
    cli_ids = [line.split()[-1] for line in printed.stdout.splitlines() if " score " in line]
    assert api_ids and cli_ids == api_ids
