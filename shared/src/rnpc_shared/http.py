"""FastAPI plumbing shared by the services: health, metrics, correlation ids, body limits, problems."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from rnpc_shared import metrics
from rnpc_shared.logging import correlation_id_var
from rnpc_shared.problems import install_problem_handlers, problem_response

UNMETERED_PATHS = frozenset({"/metrics", "/livez", "/readyz"})
CORRELATION_HEADER = "X-Correlation-ID"


def install_http_middleware(app: FastAPI, service: str, max_body_bytes: int) -> None:
    install_problem_handlers(app)

    @app.middleware("http")
    async def _observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            return problem_response(413, "Payload too large", f"body exceeds {max_body_bytes} bytes", instance=request.url.path)
        correlation_id = request.headers.get(CORRELATION_HEADER) or str(uuid.uuid4())
        token = correlation_id_var.set(correlation_id)
        path = request.url.path
        metered = path not in UNMETERED_PATHS
        started = time.perf_counter()
        route = "(unmatched)"
        status = 500
        in_progress = None
        try:
            if metered:
                in_progress = metrics.HTTP_IN_PROGRESS.labels(service, request.method, "(any)")
                in_progress.inc()
            response = await call_next(request)
            status = response.status_code
            response.headers[CORRELATION_HEADER] = correlation_id
            return response
        finally:
            if metered:
                matched = request.scope.get("route")
                route = getattr(matched, "path", route)  # the template, never the raw path (no ids)
                if in_progress is not None:  # None only if labelling itself failed
                    in_progress.dec()
                metrics.HTTP_REQUESTS.labels(service, request.method, route, str(status)).inc()
                metrics.HTTP_DURATION.labels(service, request.method, route).observe(time.perf_counter() - started)
            correlation_id_var.reset(token)


def health_router(
    *, live: Callable[[], bool], ready: Callable[[], Awaitable[dict[str, bool]]]
) -> APIRouter:
    router = APIRouter(tags=["ops"])

    @router.get("/livez")
    async def livez() -> JSONResponse:
        ok = live()
        return JSONResponse({"status": "ok" if ok else "stalled"}, status_code=200 if ok else 503)

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        checks = await ready()
        ok = all(checks.values())
        return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks}, status_code=200 if ok else 503)

    @router.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router
