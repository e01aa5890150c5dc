"""The FastAPI application: built by `create_app(settings)`, served by `twin serve`.

At start it opens a Postgres pool, loads the embedding model (queries must share the chunks' vector
space) and begins loading the served LLM in the background, so `/health` answers within seconds and
the first answer does not pay the model load. Errors reach clients as JSON without internals.
It refuses to be built for a network address without keys (`security.check_serving_safety`), and
answers only requests that name an allowed host.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from twin_platform.api import openapi
from twin_platform.api.deps import Serving
from twin_platform.api.routers import admin, chat, feedback, health, openai, rag
from twin_platform.api.schemas import error_payload
from twin_platform.api.security import (
    BodySizeLimit,
    KeyStore,
    RateLimiter,
    allowed_hosts,
    check_serving_safety,
)
from twin_platform.settings import Settings, load_settings

log = logging.getLogger("twin_platform.api")


def build_serving(settings: Settings) -> Serving:
    """Connect and load what requests need. Heavy imports live here, not at module import."""
    from twin_platform import servers
    from twin_platform.monitoring import TraceWriter
    from twin_platform.rag.pipeline import RagPipeline
    from twin_platform.rag.retriever import open_retriever
    from twin_platform.serving.deployments import DeploymentStore
    from twin_platform.serving.models import ServedModels

    retriever, pool = open_retriever(settings, servers.postgres_uri(settings))
    retriever.encode(["warm up"])
    models = ServedModels(
        settings, DeploymentStore(settings.deployments_dir), settings.serve_max_loaded_models
    )
    keys = KeyStore(settings.api_key_list)
    if keys.open:
        log.warning("TWIN_API_KEYS is not set: the API accepts requests without a key")
    return Serving(
        settings=settings,
        pool=pool,
        pipeline=RagPipeline(retriever, models, settings),
        models=models,
        writer=TraceWriter(pool),
        keys=keys,
        limiter=RateLimiter(settings.api_rate_limit_per_minute),
        feedback_limiter=RateLimiter(settings.api_feedback_per_minute),
    )


def _preload(serving: Serving) -> None:
    """The default author's model (else the base model), so the first answer does not pay its load;
    a failure is logged and shown by /ready."""
    author = serving.settings.rag_default_author
    try:
        with serving.models.lease(author) as lease:
            log.info("serving %s", lease.version)
    except Exception as exc:
        serving.load_error = f"{type(exc).__name__}: {str(exc)[:300]}"
        log.error("could not load the model for %s: %s", author or "the base model", exc)


def _watch_deployments(serving: Serving, every_s: float, stop: threading.Event) -> None:
    """Deployments recorded by processes that cannot call /admin (no key) switch here."""
    while not stop.wait(every_s):
        try:
            serving.models.refresh()
        except Exception:  # a record being rewritten, a full disk: the next look will do
            log.exception("could not check the deployment records")


def create_app(
    settings: Settings | None = None, preload_model: bool = True, bind_host: str | None = None
) -> FastAPI:
    """The app for serving on `bind_host` (default TWIN_API_HOST); raises `UnsafeServeError`
    when that would expose an API without keys."""
    settings = settings or load_settings()
    bind_host = bind_host or settings.api_host
    keys = settings.api_key_list
    check_serving_safety(keys, settings.api_allow_open, bind_host)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        serving = build_serving(settings)
        app.state.serving = serving
        if preload_model:
            threading.Thread(target=_preload, args=(serving,), daemon=True).start()
        stop = threading.Event()
        if settings.serve_deployment_poll_s > 0:
            threading.Thread(
                target=_watch_deployments,
                args=(serving, settings.serve_deployment_poll_s, stop),
                name="watch-deployments",
                daemon=True,
            ).start()
        yield
        stop.set()
        serving.writer.close()
        serving.models.close()
        serving.pool.close()

    app = FastAPI(
        title="Twin Platform API",
        summary="RAG inference for an LLM twin: answers in the author's voice from their own writing.",
        version="0.1.0",
        lifespan=lifespan,
    )
    for router in (
        health.router,
        rag.router,
        openai.router,
        feedback.router,
        chat.router,
        admin.router,
    ):
        app.include_router(router)

    origins = [o.strip() for o in settings.api_cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodySizeLimit, max_bytes=settings.api_max_body_bytes)
    # Outermost: a request naming another host (DNS rebinding) is refused before anything runs.
    app.add_middleware(
        TrustedHostMiddleware, allowed_hosts=allowed_hosts(settings.api_allowed_hosts, bind_host)
    )

    def truthful_openapi() -> dict[str, object]:
        if app.openapi_schema is None:
            document = FastAPI.openapi(app)
            app.openapi_schema = openapi.truthful(document, settings, keys_configured=bool(keys))
        return app.openapi_schema

    app.openapi = truthful_openapi  # type: ignore[method-assign]

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        kind = {
            401: "authentication_error",
            404: "not_found",
            429: "rate_limit_exceeded",
            503: "service_unavailable",
        }.get(exc.status_code, "invalid_request_error")
        return JSONResponse(
            error_payload(exc.status_code, str(exc.detail), kind), exc.status_code, exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}"
            for e in exc.errors()[:10]
        )
        return JSONResponse(
            error_payload(422, problems or "invalid request", "invalid_request_error"), 422
        )

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_payload(500, "internal error", "server_error"), 500)

    return app
