"""The API under pressure does not hang (issue 17, items 8 and 9), on the real server, Postgres and
bundled model (about 17 tokens a second here, so a 512-token answer takes half a minute).

- `/feedback` waits for its own answer's trace only, and briefly, even under steady traffic; a trace
  writer that dies is started again.
- A streamed answer cannot hold the model without bound: it is cut at TWIN_SERVE_GENERATION_TIMEOUT_S,
  a client that leaves frees the model, and a client that stops reading cannot keep it.
- `/health` and `/ready` answer while requests waiting for the model fill the thread pool.
"""

from __future__ import annotations

import ctypes
import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import httpx
import pytest
from rag_fixtures import load_corpus, start_server

from twin_platform.api.streaming import GRACE_S
from twin_platform.monitoring import Trace, TraceWriter
from twin_platform.settings import load_settings
from twin_platform.storage.postgres import connect, open_pool

KEY = "reliability-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
TIMEOUT_S = 2.0  # serve_generation_timeout_s of this module's server
LONG = {"query": "Write a long story about a dragon who learns to bake bread.", "max_tokens": 512}


@pytest.fixture(scope="module")
def served(postgres_url: str) -> Iterator[tuple[str, Any]]:
    """(url, app) of a server whose streams may last TIMEOUT_S."""
    from twin_platform.api.app import create_app

    load_corpus(postgres_url)
    settings = load_settings(
        api_keys=KEY,
        api_rate_limit_per_minute=1_000_000,
        api_feedback_per_minute=1_000_000,
        api_max_new_tokens=512,
        gen_max_tokens=8,
        serve_generation_timeout_s=TIMEOUT_S,
    )
    app = create_app(settings)
    url, server, thread = start_server(app)
    deadline = time.monotonic() + 180
    while httpx.get(f"{url}/ready").status_code != 200:  # the model loads in the background
        assert time.monotonic() < deadline
        time.sleep(0.5)
    yield url, app
    server.should_exit = True
    thread.join(timeout=60)


def serving(app: Any) -> Any:
    return app.state.serving


def model_is_free(app: Any) -> bool:
    """No request holds a lease on a loaded model, and no generation holds a model's lock."""
    loaded = list(serving(app).models._loaded.values())
    return all(
        m.leases == 0 and not getattr(m.model, "_lock", threading.Lock()).locked() for m in loaded
    )


def wait_until(condition: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def a_trace(url: str) -> str:
    response = httpx.post(f"{url}/retrieve", json={"query": "sourdough", "k": 1}, headers=AUTH)
    assert response.status_code == 200, response.text
    return str(response.json()["trace_id"])


def kill_thread(thread: threading.Thread) -> None:
    """Raise SystemExit inside `thread` (delivered when it next runs Python code)."""
    assert thread.ident is not None
    done = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(SystemExit)
    )
    assert done == 1


# 8. Feedback and the trace writer ------------------------------------------------------------------


def test_feedback_returns_under_steady_trace_traffic(served: tuple[str, Any]) -> None:
    url, app = served
    writer = serving(app).writer
    stop = threading.Event()

    def traffic() -> None:  # ~2,000 traces a second: something is always queued or being written
        while not stop.is_set():
            for _ in range(4):
                writer.submit(Trace(route="/load", query="steady", api_key_id="k_load"))
            time.sleep(0.002)

    pump = threading.Thread(target=traffic, daemon=True)
    pump.start()
    try:
        time.sleep(1)
        trace_id = a_trace(url)
        started = time.monotonic()
        response = httpx.post(
            f"{url}/feedback", json={"trace_id": trace_id, "rating": 1}, headers=AUTH, timeout=20
        )
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        pump.join()
    assert response.status_code == 201, response.text
    assert elapsed < serving(app).settings.api_trace_wait_s


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_killed_trace_writer_is_started_again(served: tuple[str, Any]) -> None:
    url, app = served
    writer = serving(app).writer
    restarts = writer.restarts
    kill_thread(writer._thread)
    writer.submit(Trace(route="/load", query="wakes the writer, which dies", api_key_id="k_load"))
    assert wait_until(lambda: not writer._thread.is_alive() or writer.restarts > restarts, 5)
    trace_id = a_trace(url)  # traced after the writer died
    response = httpx.post(
        f"{url}/feedback", json={"trace_id": trace_id, "rating": -1}, headers=AUTH, timeout=20
    )
    assert response.status_code == 201, response.text
    assert writer.restarts == restarts + 1 and writer.alive


class FailingOnce:
    """The real pool, whose first connection raises what no database driver would."""

    def __init__(self, pool: Any) -> None:
        self.pool, self.failed = pool, False

    def connection(self, *args: Any, **kwargs: Any) -> Any:
        if not self.failed:
            self.failed = True
            raise RuntimeError("a bug in the writer's path")
        return self.pool.connection(*args, **kwargs)


def test_a_trace_writer_survives_an_unexpected_error(postgres_url: str) -> None:
    pool = open_pool(postgres_url, max_size=1)
    writer = TraceWriter(FailingOnce(pool), linger_s=0.01)
    try:
        lost = Trace(route="/writer-test", query="in the failing batch")
        writer.submit(lost)
        assert writer.wait_written(lost.trace_id, 5)  # given up on, not waited for forever
        kept = Trace(route="/writer-test", query="after the failure")
        writer.submit(kept)
        assert writer.wait_written(kept.trace_id, 5) and writer.restarts == 0
        assert writer.wait_written(uuid.uuid4(), 0.1)  # an unknown id does not wait
        with connect(postgres_url) as conn:
            found = conn.execute(
                "SELECT count(*) FROM traces WHERE trace_id = %s", (kept.trace_id,)
            ).fetchone()
        assert found == (1,)
    finally:
        writer.close()
        pool.close()


# 9. Streams, the model and the health checks -------------------------------------------------------


def events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield json.loads(line[6:])


def test_a_long_stream_ends_at_the_generation_timeout(
    served: tuple[str, Any], postgres_url: str
) -> None:
    url, app = served
    started = time.monotonic()
    with httpx.stream(
        "POST", f"{url}/rag", json=LONG | {"stream": True}, headers=AUTH, timeout=60
    ) as r:
        received = list(events(r))
    elapsed = time.monotonic() - started
    assert received[0]["type"] == "sources" and received[-1]["type"] == "error", received[-1]
    assert received[-1]["message"] == f"the answer was stopped after {TIMEOUT_S:g} s"
    assert elapsed < TIMEOUT_S + GRACE_S
    assert wait_until(lambda: model_is_free(app), 3)

    def trace_error() -> tuple[str] | None:  # written in the background after the last event
        with connect(postgres_url) as conn:
            return conn.execute(
                "SELECT error FROM traces WHERE trace_id = %s", (received[0]["trace_id"],)
            ).fetchone()

    assert wait_until(lambda: trace_error() is not None, 5)
    error = trace_error()
    assert error is not None and error[0].startswith("GenerationTimeout")
    chat = LONG | {
        "model": "twin",
        "stream": True,
        "messages": [{"role": "user", "content": LONG["query"]}],
    }
    with httpx.stream(
        "POST", f"{url}/v1/chat/completions", json=chat, headers=AUTH, timeout=60
    ) as r:
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]" and json.loads(lines[-2][6:])["error"]["code"] == 504


def test_a_client_that_leaves_frees_the_model(served: tuple[str, Any]) -> None:
    url, app = served
    with httpx.stream(
        "POST", f"{url}/rag", json=LONG | {"stream": True}, headers=AUTH, timeout=60
    ) as r:
        for event in events(r):
            if event["type"] == "delta":
                break  # and leave, mid-answer
    assert wait_until(lambda: model_is_free(app), 1.5), "the model is still held"


def test_a_reader_that_stops_reading_cannot_keep_the_model(served: tuple[str, Any]) -> None:
    """The ASGI app driven directly: the client takes the first two events, then never reads again
    (its `send` never returns) and never disconnects."""
    _, app = served
    body = json.dumps(LONG | {"stream": True}).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/rag",
        "raw_path": b"/rag",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"localhost"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", AUTH["Authorization"].encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if not messages:
            return {"type": "http.request", "body": body, "more_body": False}
        await anyio.sleep_forever()
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)
        if sum(m["type"] == "http.response.body" for m in messages) >= 2:
            await anyio.sleep_forever()  # the client stopped reading

    async def call() -> float:
        started = time.monotonic()
        with anyio.fail_after(TIMEOUT_S + GRACE_S + 10):
            await app(scope, receive, send)
        return time.monotonic() - started

    elapsed = anyio.run(call)
    assert messages[0]["status"] == 200
    assert elapsed < TIMEOUT_S + GRACE_S + 3
    assert wait_until(lambda: model_is_free(app), 3)


def test_health_answers_while_requests_wait_for_the_model(served: tuple[str, Any]) -> None:
    """48 answers queue for the one model (more than the 40 threads requests run on) and a few
    streams are opened and never read; the probes still answer at once."""
    url, _ = served
    question = {"query": "What does Rhea feed Gerald?", "max_tokens": 8, "k": 1}

    def ask(_: int) -> int:
        return httpx.post(f"{url}/rag", json=question, headers=AUTH, timeout=300).status_code

    readers = [httpx.Client(timeout=60) for _ in range(3)]
    stalled = [
        reader.send(
            reader.build_request("POST", f"{url}/rag", json=LONG | {"stream": True}, headers=AUTH),
            stream=True,
        )
        for reader in readers
    ]
    with ThreadPoolExecutor(max_workers=48) as pool:
        answers = [pool.submit(ask, i) for i in range(48)]
        time.sleep(3)  # every request is in, the pool's threads are waiting for the model
        probes = []
        for path in ("/health", "/ready", "/health"):
            started = time.monotonic()
            status = httpx.get(f"{url}{path}", timeout=30).status_code
            probes.append((path, status, time.monotonic() - started))
        statuses = [a.result() for a in answers]
    for response, reader in zip(stalled, readers, strict=True):
        response.close()
        reader.close()
    assert all(status == 200 for _, status, _ in probes), probes
    assert all(seconds < 1.0 for _, _, seconds in probes), probes
    assert statuses == [200] * 48
