"""The chat page: a prompt box, the streamed answer, its sources and feedback buttons (`GET /`)."""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)


@cache
def _page() -> str:
    return (
        resources.files("twin_platform.api")
        .joinpath("static/chat.html")
        .read_text(encoding="utf-8")
    )


@router.get("/", response_class=HTMLResponse)
def chat_page() -> HTMLResponse:
    return HTMLResponse(_page(), headers={"Cache-Control": "no-cache"})
