"""`POST /feedback`: a rating on a traced answer. A correction of a bad answer waits for review
(`twin feedback`), then may become a preference pair for the author the server recorded."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from twin_platform.api.deps import KeyDep, ServingDep
from twin_platform.api.routers.rag import ERRORS
from twin_platform.api.schemas import ErrorResponse, FeedbackRequest, FeedbackResponse
from twin_platform.api.security import retry_after_header
from twin_platform.monitoring import TooManyPending, UnknownTrace, add_feedback

router = APIRouter(tags=["feedback"])


@router.post(
    "/feedback",
    response_model=FeedbackResponse,
    status_code=201,
    responses=ERRORS
    | {
        404: {"model": ErrorResponse, "description": "No answer with this trace_id for this key."},
        429: {
            "model": ErrorResponse,
            "description": "Over the key's request or feedback rate, or too many corrections"
            " awaiting review; see Retry-After.",
        },
        503: {"model": ErrorResponse, "description": "The answer is not recorded yet; retry."},
    },
)
def feedback(body: FeedbackRequest, serving: ServingDep, key: KeyDep) -> FeedbackResponse:
    """Rate an answer (1 good, -1 bad), optionally with a better one. Only the key that received
    the answer may rate it; the correction of a bad answer enters training only once a reviewer
    approved it (`status` says whether it waits for review)."""
    settings = serving.settings
    wait = serving.feedback_limiter.acquire(key)
    if wait > 0:
        raise HTTPException(429, "feedback rate limit exceeded", headers=retry_after_header(wait))
    # Only this answer's trace is waited for, briefly: never the whole queue of everyone's traffic.
    if not serving.writer.wait_written(body.trace_id, settings.api_trace_wait_s):
        raise HTTPException(
            503, "the answer is not recorded yet; retry shortly", headers=retry_after_header(1)
        )
    try:
        with serving.pool.connection(timeout=settings.api_trace_wait_s) as conn:
            feedback_id, status = add_feedback(
                conn,
                body.trace_id,
                body.rating,
                body.correction,
                api_key_id=key,
                max_pending=settings.api_feedback_max_pending,
            )
    except UnknownTrace:
        raise HTTPException(404, f"unknown trace_id {body.trace_id}") from None
    except TooManyPending as exc:
        raise HTTPException(429, str(exc), headers=retry_after_header(60)) from None
    return FeedbackResponse(feedback_id=feedback_id, status=status)  # type: ignore[arg-type]
