"""Deployment without a restart: `POST /admin/models/{author}/reload` loads the author's current
deployment beside the serving model, smoke-tests it, switches, then drains and unloads the old one.
The `deployed_endpoint` asset and `twin deploy rollback` call it."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from twin_platform.api.deps import KeyDep, ServingDep
from twin_platform.api.routers.rag import ERRORS
from twin_platform.api.schemas import ErrorResponse
from twin_platform.serving.models import UnknownModel

router = APIRouter(prefix="/admin", tags=["admin"])


class Reloaded(BaseModel):
    author: str
    version: str
    previous: str | None
    load_s: float
    smoke_s: float


@router.post(
    "/models/{author}/reload",
    response_model=Reloaded,
    responses=ERRORS | {404: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
)
def reload_model(author: str, serving: ServingDep, key: KeyDep) -> Reloaded:
    """Serve the author's current deployment. A model that fails to load or to answer a smoke
    query is not switched in: the previous one keeps serving and the error says why (503)."""
    try:
        report = serving.models.reload(author)
    except UnknownModel as exc:
        raise HTTPException(404, str(exc)) from exc
    except Exception as exc:
        raise HTTPException(503, f"the new model was not switched in: {str(exc)[:300]}") from exc
    return Reloaded(**report.__dict__)
