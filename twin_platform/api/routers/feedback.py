"""`POST /feedback`: a rating on a traced answer; a correction becomes a preference pair for DPO."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from twin_platform.api.deps import KeyDep, ServingDep
from twin_platform.api.routers.rag import ERRORS
from twin_platform.api.schemas import FeedbackRequest, FeedbackResponse
from twin_platform.monitoring import UnknownTrace, add_feedback

router = APIRouter(tags=["feedback"])


@router.post(
    "/feedback", response_model=FeedbackResponse, status_code=201, responses=ERRORS | {404: {}}
)
def feedback(body: FeedbackRequest, serving: ServingDep, key: KeyDep) -> FeedbackResponse:
    serving.writer.flush()  # the trace may still be queued
    try:
        with serving.pool.connection() as conn:
            feedback_id = add_feedback(conn, body.trace_id, body.rating, body.correction)
    except UnknownTrace:
        raise HTTPException(404, f"unknown trace_id {body.trace_id}") from None
    return FeedbackResponse(feedback_id=feedback_id)
