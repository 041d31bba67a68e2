"""RFC 9457 problem details: every error names the field and the rule; never a bare 500."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


def is_database_busy(exc: OperationalError) -> bool:
    """SQLite's lock contention (SQLITE_BUSY / SQLITE_LOCKED), as opposed to a real fault."""
    message = str(exc.orig).lower()
    return "database is locked" in message or "database is busy" in message or "database table is locked" in message


class ProblemError(Exception):
    """Raise from a route or service to answer with a problem+json body."""

    def __init__(
        self, status: int, title: str, detail: str, *, type_: str = "about:blank", headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.headers = headers or {}
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_
        self.extra = extra

    def response(self, instance: str | None) -> JSONResponse:
        return problem_response(
            self.status, self.title, self.detail, type_=self.type, instance=instance, headers=self.headers, **self.extra
        )


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    type_: str = "about:blank",
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def field_errors(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic errors → [{field, rule, message}], the field dotted and without the 'body' prefix."""
    out = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ()) if part not in ("body",)]
        ctx = error.get("ctx") or {}
        if isinstance(ctx.get("field"), str):
            loc.append(ctx["field"])  # a cross-field rule names the field it is about
        rule = ctx.get("rule") if isinstance(ctx.get("rule"), str) else error.get("type", "invalid")
        out.append({"field": ".".join(loc) or "(body)", "rule": rule, "message": error.get("msg", "invalid")})
    return out


def validation_problem(errors: Sequence[Mapping[str, Any]], instance: str | None = None) -> JSONResponse:
    fields = field_errors(errors)
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in fields)
    return problem_response(
        422,
        "Invalid request",
        detail,
        type_="https://rnpc.example/problems/validation",
        instance=instance,
        errors=fields,
    )


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_problem(list(exc.errors()), instance=request.url.path)

    @app.exception_handler(ValidationError)
    async def _model_validation(request: Request, exc: ValidationError) -> JSONResponse:
        return validation_problem(list(exc.errors()), instance=request.url.path)

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return exc.response(instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(
            exc.status_code, str(exc.detail), str(exc.detail), instance=request.url.path, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(SQLAlchemyTimeoutError)
    async def _pool_exhausted(request: Request, exc: SQLAlchemyTimeoutError) -> JSONResponse:
        # Every database connection stayed busy past the pool timeout: overload, not a bug.
        response = problem_response(
            503, "Service overloaded", "no database connection became free in time; retry shortly",
            type_="https://rnpc.example/problems/overloaded", instance=request.url.path,
        )
        response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(OperationalError)
    async def _database_busy(request: Request, exc: OperationalError) -> JSONResponse:
        # SQLite answers "database is locked" at once when a read transaction must become a write
        # one while another writer holds the lock (busy_timeout does not apply): the transaction
        # was rolled back, nothing was stored, the client may retry. Anything else stays a 500.
        if not is_database_busy(exc):
            log.exception("unhandled database error")
            return problem_response(500, "Internal error", "An unexpected error occurred; it has been logged.", instance=request.url.path)
        response = problem_response(
            503, "Database busy", "the database was busy; nothing was stored, retry shortly",
            type_="https://rnpc.example/problems/busy", instance=request.url.path,
        )
        response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return problem_response(500, "Internal error", "An unexpected error occurred; it has been logged.", instance=request.url.path)
