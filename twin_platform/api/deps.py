"""Dependencies shared by the routers: the serving state, authentication and rate limiting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from twin_platform.api.security import KeyStore, RateLimiter, retry_after_header
from twin_platform.monitoring import TraceWriter
from twin_platform.rag.pipeline import RagPipeline
from twin_platform.serving.models import ServedModels
from twin_platform.settings import Settings


@dataclass
class Serving:
    """Everything a request needs, built once at start (see app.lifespan)."""

    settings: Settings
    pool: Any  # psycopg_pool.ConnectionPool
    pipeline: RagPipeline
    models: ServedModels
    writer: TraceWriter
    keys: KeyStore
    limiter: RateLimiter
    feedback_limiter: RateLimiter  # per key, on top of `limiter`: feedback feeds human review
    load_error: str | None = None  # why the default model failed to load, if it did


# The dependencies are `async def` though they never await: FastAPI runs a plain `def` dependency in
# its threadpool, a hop that cost more than the whole retrieval pipeline's Python under load.


async def get_serving(request: Request) -> Serving:
    return request.app.state.serving  # type: ignore[no-any-return]


_bearer = HTTPBearer(auto_error=False, description="An API key from TWIN_API_KEYS.")


async def api_key(
    serving: Annotated[Serving, Depends(get_serving)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The caller's key id; 401 without a valid key (when keys are configured), 429 over its rate."""
    key = serving.keys.identify(credentials.credentials if credentials else None)
    if key is None:
        raise HTTPException(
            401, "missing or invalid API key", headers={"WWW-Authenticate": "Bearer"}
        )
    wait = serving.limiter.acquire(key)
    if wait > 0:
        raise HTTPException(429, "rate limit exceeded", headers=retry_after_header(wait))
    return key


ServingDep = Annotated[Serving, Depends(get_serving)]
KeyDep = Annotated[str, Depends(api_key)]


def check_limits(serving: Serving, k: int | None, max_tokens: int | None = None) -> None:
    """The configured limits (tighter than the schema's ceilings) give 422 like any invalid input."""
    s = serving.settings
    if k is not None and k > s.api_max_k:
        raise HTTPException(422, f"k must be at most {s.api_max_k}")
    if max_tokens is not None and max_tokens > s.api_max_new_tokens:
        raise HTTPException(422, f"max_tokens must be at most {s.api_max_new_tokens}")
