"""Liveness (`/health`: the process answers) and readiness (`/ready`: it can serve requests).

Neither runs in the thread pool that requests use: requests waiting for a busy model can fill that
pool, and a probe that waits behind them makes a healthy server look dead. `/health` runs on the
event loop; `/ready`'s database check runs on threads of its own.
"""

from __future__ import annotations

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from twin_platform.api.deps import Serving, ServingDep
from twin_platform.api.schemas import Health, Readiness

router = APIRouter(tags=["health"])
_PROBE_THREADS = anyio.CapacityLimiter(4)


@router.get("/health", response_model=Health)
async def health() -> Health:
    return Health(status="ok")


def _database_answers(serving: Serving) -> bool:
    try:
        with serving.pool.connection(timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except Exception:
        return False


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(serving: ServingDep) -> JSONResponse:
    """Ready when the database answers and the default model loaded; not ready while it is loading,
    and not ready, with the reason, when it failed to load."""
    database = await anyio.to_thread.run_sync(_database_answers, serving, limiter=_PROBE_THREADS)
    author = serving.settings.rag_default_author
    loaded = serving.models.is_loaded(author)
    ok = database and loaded and serving.load_error is None
    reason = (
        None
        if ok
        else serving.load_error or ("database unreachable" if not database else "model loading")
    )
    body = Readiness(
        status="ready" if ok else "not ready",
        database=database,
        embedding_model=True,
        generation_model=loaded,
        model=next(e.version for e in serving.models.catalog() if e.author in (author, None)),
        reason=reason,
    )
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
