"""Errors as RFC 9457 problem details (``application/problem+json``). Each kind of failure
the client API reports has one status; anything unexpected is a 500 that says nothing
about the code, with an id to find the log line by."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from alphasaga_accounts import AuthFailed, Locked
from alphasaga_shared import errors

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://alphasaga.dev/problems/"

_CLIENT_ERRORS: list[tuple[type[Exception], int, str]] = [
    (errors.Forbidden, 403, "forbidden"),
    (errors.NotFound, 404, "not-found"),
    (errors.Ambiguous, 409, "ambiguous-id"),
    (errors.InvalidTransition, 409, "invalid-transition"),
    (errors.InvalidRequest, 422, "invalid-request"),
    (errors.Unavailable, 503, "unavailable"),
    (errors.Corrupt, 500, "corrupt-data"),
]


class Problem(Exception):
    """Raised by a route to answer with a problem."""

    def __init__(self, status: int, kind: str, detail: str, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.status, self.kind, self.detail, self.headers, self.extra = status, kind, detail, headers or {}, extra


def problem(
    request: Request, status: int, kind: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {
        "type": TYPE_BASE + kind,
        "title": kind.replace("-", " ").capitalize(),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _field_errors(exc: RequestValidationError) -> tuple[str, list[dict[str, str]]]:
    """Where and what, never the input itself (it may be a password)."""
    found = [
        {"field": ".".join(str(p) for p in e.get("loc", ())), "message": str(e.get("msg", ""))} for e in exc.errors()
    ]
    kind = "malformed-json" if any(e.get("type") == "json_invalid" for e in exc.errors()) else "validation-error"
    return kind, found


def install(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem(request, exc.status, exc.kind, exc.detail, exc.headers, **exc.extra)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        kind, found = _field_errors(exc)
        status = 400 if kind == "malformed-json" else 422
        return problem(request, status, kind, "the request is not valid", errors=found)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return problem(request, exc.status_code, kind, str(exc.detail), dict(exc.headers or {}))

    async def on_auth(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, Locked):
            return problem(request, 423, "locked", str(exc), {"Retry-After": str(exc.retry_after_s)})
        return problem(request, 401, "unauthorized", str(exc), {"WWW-Authenticate": "Bearer"})

    async def on_client_error(request: Request, exc: Exception) -> JSONResponse:
        for cls, status, kind in _CLIENT_ERRORS:
            if isinstance(exc, cls):
                return problem(request, status, kind, str(exc))
        return problem(request, 400, "bad-request", str(exc))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        incident = uuid.uuid4().hex[:12]
        # The type only: an exception's text or traceback may carry a secret or an input.
        log.error(
            "unexpected %s on %s %s (incident %s)", type(exc).__name__, request.method, request.url.path, incident
        )
        return problem(request, 500, "internal-error", f"an unexpected error (incident {incident})")

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(AuthFailed, on_auth)
    app.add_exception_handler(errors.ClientError, on_client_error)
    app.add_exception_handler(Exception, on_unexpected)
