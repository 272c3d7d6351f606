"""Errors as RFC 9457 problem details (``application/problem+json``). Each kind of failure
the client API reports has one status; anything unexpected is a 500 that says nothing
about the code, with an id to find the log line by."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import Scope, Send

from alphasaga_accounts import AuthFailed, Locked
from alphasaga_contracts.text import UNSTORABLE
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


def document(status: int, kind: str, detail: str, instance: str, **extra: Any) -> dict[str, Any]:
    """The problem's JSON body."""
    return {
        "type": TYPE_BASE + kind,
        "title": kind.replace("-", " ").capitalize(),
        "status": status,
        "detail": detail,
        "instance": instance,
        **extra,
    }


def instance(scope: Scope) -> str:
    """The request's path as it was sent (percent-encoded, as a URI reference is), so that
    a character the API refused is not spelled out again in its answer."""
    raw: bytes | None = scope.get("raw_path")
    return raw.decode("ascii", "replace") if raw else UNSTORABLE.sub("\ufffd", scope.get("path", ""))


def problem(
    request: Request, status: int, kind: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = document(status, kind, detail, instance(request.scope), **extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


async def send(scope: Scope, send: Send, status: int, kind: str, detail: str) -> None:
    """Answer with a problem from ASGI middleware, below the app's exception handlers."""
    body = json.dumps(document(status, kind, detail, instance(scope))).encode()
    headers = [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def unexpected(method: str, path: str, exc: Exception) -> str:
    """Log an unexpected error as one line, its type and an incident id, and return the
    detail to answer with. Never the exception's text or traceback: either may carry a
    secret or an input."""
    incident = uuid.uuid4().hex[:12]
    log.error("unexpected %s on %s %s (incident %s)", type(exc).__name__, method, path, incident)
    return f"an unexpected error (incident {incident})"


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
        assert isinstance(exc, errors.ClientError)
        for cls, status, kind in _CLIENT_ERRORS:
            if isinstance(exc, cls):
                return problem(request, status, kind, exc.public)  # without the operator's hint
        return problem(request, 400, "bad-request", exc.public)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(AuthFailed, on_auth)
    app.add_exception_handler(errors.ClientError, on_client_error)
    # Anything else is answered by edge.LastWord: an ``Exception`` handler here would run in
    # Starlette's ServerErrorMiddleware, which re-raises after answering, so that uvicorn
    # logs the traceback and drops the kept-alive connection.
