"""5,000 requests with keys configured and rate limits on: no error but the 429s the limits intend,
each in OpenAI's error shape with a Retry-After (issue 17, load).

Real server (uvicorn in a thread), Postgres and embedding model; the load is retrieval, model
listing, health probes and feedback from three keys, 16 in flight, far above the keys' rates.
Counts only: no timing is asserted (the machine is shared).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from rag_fixtures import load_corpus, start_server

from twin_platform.settings import load_settings

KEYS = [f"load-key-{i}-0123456789" for i in range(3)]
REQUESTS = 5000
CONCURRENCY = 16
QUERIES = [
    "What does Rhea Vance feed Gerald?",
    "How do you keep migrations safe?",
    "winter cycling gloves",
    "sourdough spelt cold proof",
    "trail running water",
]


@pytest.fixture(scope="module")
def api(postgres_url: str) -> Iterator[str]:
    from twin_platform.api.app import create_app

    load_corpus(postgres_url)
    settings = load_settings(
        api_keys=",".join(KEYS),
        api_rate_limit_per_minute=1200,  # 20 a second per key, bursts of 120
        api_feedback_per_minute=30,  # bursts of 10
    )
    url, server, thread = start_server(create_app(settings, preload_model=False))
    yield url
    server.should_exit = True
    thread.join(timeout=30)


def request_plan(
    n: int, traces: dict[str, str]
) -> list[tuple[str, str, str, dict[str, Any] | None]]:
    """(key, method, path, body) for every request: mostly retrieval, some listing, probes and
    feedback (on a trace of the same key)."""
    plan = []
    for i in range(n):
        key = KEYS[i % len(KEYS)]
        if i % 20 == 0:
            plan.append((key, "POST", "/feedback", {"trace_id": traces[key], "rating": 1}))
        elif i % 10 == 1:
            plan.append((key, "GET", "/v1/models", None))
        elif i % 10 == 2:
            plan.append((key, "GET", "/health", None))
        else:
            body = {"query": QUERIES[i % len(QUERIES)], "k": 1 + i % 5}
            plan.append((key, "POST", "/retrieve", body))
    return plan


def is_openai_rate_limit(status: int, headers: Any, body: Any) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    return (
        status == 429
        and set(body) == {"error"}
        and isinstance(error, dict)
        and set(error) == {"message", "type", "param", "code"}
        and error["type"] == "rate_limit_exceeded"
        and error["code"] == 429
        and error["param"] is None
        and bool(error["message"])
        and int(headers.get("Retry-After", "0")) >= 1
    )


async def drive(url: str, plan: list[tuple[str, str, str, dict[str, Any] | None]]) -> Counter[str]:
    import aiohttp

    outcomes: Counter[str] = Counter()
    cursor = iter(plan)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        url, connector=aiohttp.TCPConnector(limit=CONCURRENCY), timeout=timeout
    ) as client:

        async def worker() -> None:
            for key, method, path, body in cursor:
                headers = {"Authorization": f"Bearer {key}"}
                try:
                    async with client.request(method, path, json=body, headers=headers) as r:
                        payload = await r.json(content_type=None)
                        if r.status in (200, 201):
                            outcomes[f"{path} {r.status}"] += 1
                        elif is_openai_rate_limit(r.status, r.headers, payload):
                            outcomes[f"{path} 429"] += 1
                        else:
                            outcomes[f"error {path} {r.status}: {str(payload)[:120]}"] += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    outcomes[f"error {path} {type(exc).__name__}"] += 1

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return outcomes


def test_5000_requests_with_keys_and_rate_limits(api: str) -> None:
    import httpx

    traces = {}
    for key in KEYS:  # one answer per key to give feedback on (not counted in the load)
        response = httpx.post(
            f"{api}/retrieve",
            json={"query": "sourdough"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code == 200
        traces[key] = response.json()["trace_id"]
    outcomes = asyncio.run(drive(api, request_plan(REQUESTS, traces)))
    print("\n".join(f"{n:6d}  {what}" for what, n in sorted(outcomes.items())))
    errors = {what: n for what, n in outcomes.items() if what.startswith("error")}
    assert sum(outcomes.values()) == REQUESTS
    assert errors == {}
    limited = sum(n for what, n in outcomes.items() if what.endswith(" 429"))
    assert limited > 0 and outcomes["/retrieve 200"] > 0 and outcomes["/feedback 201"] > 0
    assert outcomes["/health 200"] == REQUESTS // 10  # probes are never rate limited


def test_the_openai_sdk_reads_a_429_as_a_rate_limit(api: str) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{api}/v1", api_key=KEYS[0], max_retries=0)
    with pytest.raises(openai.RateLimitError) as limited:
        for _ in range(400):  # past the burst of 120
            client.models.list()
    assert limited.value.status_code == 429
    assert limited.value.body == {
        "message": "rate limit exceeded",
        "type": "rate_limit_exceeded",
        "param": None,
        "code": 429,
    }
