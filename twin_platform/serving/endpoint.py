"""Telling a running API to serve a deployment, and checking that it does.

The deployment record is written first; a running API is then asked to load it (`/admin/models/
{author}/reload`), its health checked and one question asked of the new model. If the API refuses
the model (it failed to load or to answer), the previous record is written back, so the record
always names what the API serves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from twin_platform.serving.deployments import Deployment, DeploymentStore

SMOKE_QUESTION = "In two sentences, what do you write about?"


class DeployError(RuntimeError):
    """The API did not switch to the deployment; it serves the previous one."""


@dataclass(frozen=True)
class DeployReport:
    deployment: Deployment
    api_url: str | None  # None: no API runs; it loads the deployment when it starts
    load_s: float | None = None
    smoke_s: float | None = None
    smoke_answer: str | None = None


def deploy(
    store: DeploymentStore,
    deployment: Deployment,
    api_url: str | None,
    api_key: str | None,
    timeout_s: float = 600,
) -> DeployReport:
    previous = store.get(deployment.author)
    saved = store.record(deployment)
    if api_url is None:
        return DeployReport(saved, None)
    try:
        return _switch(saved, api_url, api_key, timeout_s)
    except Exception:
        if previous is not None:
            store.restore(previous)
        else:
            store.remove(deployment.author)
        raise


def reload(
    api_url: str, api_key: str | None, author: str, timeout_s: float = 600
) -> dict[str, object]:
    """Ask the API to serve the author's current record; raises DeployError when it refuses."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.post(
        f"{api_url}/admin/models/{author}/reload", headers=headers, timeout=timeout_s
    )
    if response.status_code != 200:
        message = response.json().get("error", {}).get("message", response.text[:200])
        raise DeployError(f"the API at {api_url} did not switch {author}: {message}")
    return dict(response.json())


def _switch(
    deployment: Deployment, api_url: str, api_key: str | None, timeout_s: float
) -> DeployReport:
    reloaded = reload(api_url, api_key, deployment.author, timeout_s)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    if httpx.get(f"{api_url}/health", timeout=10).status_code != 200:
        raise DeployError(f"the API at {api_url} is not healthy after the switch")
    started = time.perf_counter()
    response = httpx.post(
        f"{api_url}/v1/chat/completions",
        headers=headers,
        json={
            "model": deployment.model,
            "messages": [{"role": "user", "content": SMOKE_QUESTION}],
            "max_tokens": 8,
            "temperature": 0,
        },
        timeout=timeout_s,
    )
    smoke_s = time.perf_counter() - started
    if response.status_code != 200:
        raise DeployError(f"the smoke query to {deployment.model} failed: {response.text[:200]}")
    answer = response.json()["choices"][0]["message"]["content"]
    return DeployReport(
        deployment,
        api_url,
        float(reloaded["load_s"]),
        smoke_s,
        answer,  # type: ignore[arg-type]
    )
