"""Liveness (`/health`: the process answers) and readiness (`/ready`: it can serve requests)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from twin_platform.api.deps import ServingDep
from twin_platform.api.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
def health() -> Health:
    return Health(status="ok")


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
def ready(serving: ServingDep) -> JSONResponse:
    """Ready when the database answers and the embedding model is loaded; the LLM may still be loading."""
    try:
        with serving.pool.connection(timeout=2) as conn:
            conn.execute("SELECT 1")
        database = True
    except Exception:
        database = False
    body = Readiness(
        status="ready" if database else "not ready",
        database=database,
        embedding_model=True,
        generation_model=serving.generator.loaded,
        model=serving.generator.served.version,
    )
    return JSONResponse(body.model_dump(), status_code=200 if database else 503)
