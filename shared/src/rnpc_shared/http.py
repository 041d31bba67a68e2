"""FastAPI plumbing shared by the services: health, metrics, correlation ids, body limits, problems."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import Headers, MutableHeaders

from rnpc_shared import metrics
from rnpc_shared.logging import correlation_id_var
from rnpc_shared.problems import install_problem_handlers, problem_response

UNMETERED_PATHS = frozenset({"/metrics", "/livez", "/readyz"})
CORRELATION_HEADER = "X-Correlation-ID"
# What a correlation id may be (it is stored, logged and sent on): anything else is replaced.
CORRELATION_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]


def valid_correlation_id(value: str | None) -> str:
    """The caller's correlation id when it is well-formed, else a fresh one."""
    if value is not None and CORRELATION_ID_PATTERN.fullmatch(value):
        return value
    return str(uuid.uuid4())


class BodyGuard:
    """Reads the whole request body before the app sees it, so its size is capped however it is
    sent (Content-Length or chunked) → 413, and a body that arrives too slowly → 408.

    Memory stays bounded: past the cap the rest is read and discarded (until the deadline), so the
    client gets its 413 instead of a reset connection."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    size += len(message.get("body", b""))
                    if size <= self.max_body_bytes:
                        chunks.append(message.get("body", b""))
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            if size <= self.max_body_bytes:
                await _send_problem(send, scope, 408, "Request timeout", f"the body did not arrive within {self.timeout_s} s")
                return
        if size > self.max_body_bytes:
            await _send_problem(send, scope, 413, "Payload too large", f"body exceeds {self.max_body_bytes} bytes")
            return
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect

        await self.app(scope, replay, send)


async def _send_problem(send: Send, scope: dict[str, Any], status: int, title: str, detail: str) -> None:
    response = problem_response(status, title, detail, instance=scope.get("path"), headers={"Connection": "close"})
    await response(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


class Observe:
    """Correlation id in and out, request metrics, and the declared-size check: a plain ASGI
    middleware (Starlette's BaseHTTPMiddleware runs each request through an extra task and
    stream, a measurable share of a small request's CPU)."""

    def __init__(self, app: ASGIApp, service: str, max_body_bytes: int) -> None:
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            response = problem_response(413, "Payload too large", f"body exceeds {self.max_body_bytes} bytes", instance=scope["path"])
            await response(scope, receive, send)
            return
        correlation_id = valid_correlation_id(headers.get(CORRELATION_HEADER))
        token = correlation_id_var.set(correlation_id)
        metered = scope["path"] not in UNMETERED_PATHS
        method = scope["method"]
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[CORRELATION_HEADER] = correlation_id
            await send(message)

        in_progress = metrics.HTTP_IN_PROGRESS.labels(self.service, method, "(any)") if metered else None
        if in_progress is not None:
            in_progress.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if in_progress is not None:
                in_progress.dec()
                route = getattr(scope.get("route"), "path", "(unmatched)")  # the template, never the raw path (no ids)
                metrics.HTTP_REQUESTS.labels(self.service, method, route, str(status)).inc()
                metrics.HTTP_DURATION.labels(self.service, method, route).observe(time.perf_counter() - started)
            correlation_id_var.reset(token)


def install_http_middleware(app: FastAPI, service: str, max_body_bytes: int, body_timeout_s: float = 10.0) -> None:
    install_problem_handlers(app)
    app.add_middleware(BodyGuard, max_body_bytes=max_body_bytes, timeout_s=body_timeout_s)
    app.add_middleware(Observe, service=service, max_body_bytes=max_body_bytes)  # outermost: sees every answer


def health_router(
    *, service: str, live: Callable[[], bool], ready: Callable[[], Awaitable[dict[str, bool]]]
) -> APIRouter:
    """Probes that name the service answering, so a probe of the wrong port is seen as such."""
    router = APIRouter(tags=["ops"])

    @router.get("/livez")
    async def livez() -> JSONResponse:
        ok = live()
        return JSONResponse({"service": service, "status": "ok" if ok else "stalled"}, status_code=200 if ok else 503)

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        checks = await ready()
        ok = all(checks.values())
        body = {"service": service, "status": "ready" if ok else "not_ready", "checks": checks}
        return JSONResponse(body, status_code=200 if ok else 503)

    @router.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router
