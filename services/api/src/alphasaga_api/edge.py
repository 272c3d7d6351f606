"""ASGI middleware at the edge: the last word on unexpected errors, the body size limit,
request metrics, an audit record of every mutating call (the auth routes record their own,
with more detail), and conditional GETs."""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import problems

log = logging.getLogger(__name__)

REQUESTS = Counter("alphasaga_api_requests_total", "API requests answered", ["method", "route", "status"])
LATENCY = Histogram(
    "alphasaga_api_request_seconds",
    "Time to the first byte of the answer",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class HttpMiddleware:
    """ASGI middleware that acts on HTTP requests (``http``) and passes anything else
    (lifespan, websockets) straight through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.http(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class BodyLimit(HttpMiddleware):
    """Refuses a body over ``limit`` bytes: at once when Content-Length says so, else as
    soon as the bytes read pass it (a chunked upload cannot get around it)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        super().__init__(app)
        self.limit = limit

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _too_large(scope, send, self.limit)
            return
        seen, answered = 0, False

        async def counted() -> Message:
            nonlocal seen, answered
            message = await receive()
            if message["type"] == "http.request" and not answered:
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # Answer now, and tell the app the client is gone: it stops reading,
                    # and whatever it would still answer is dropped below.
                    answered = True
                    await _too_large(scope, send, self.limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            if not answered:
                await send(message)

        await self.app(scope, counted, guarded)


async def _too_large(scope: Scope, send: Send, limit: int) -> None:
    await problems.send(scope, send, 413, "body-too-large", f"the request body is over the {limit:,}-byte limit")


class LastWord(HttpMiddleware):
    """Answers an error nothing else handled with a 500 problem and one log line (its type
    and an incident id), and ends there: nothing is re-raised to the server, so no
    traceback reaches the log and a kept-alive connection stays usable. An error after the
    answer began ends the answer where it is."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            detail = problems.unexpected(scope["method"], scope.get("path", ""), exc)
            try:
                if not started:
                    await problems.send(scope, send, 500, "internal-error", detail)
                else:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
            except Exception:  # the client is gone, or the answer cannot end here: the server closes it
                log.warning("the answer to %s %s could not be ended", scope["method"], scope.get("path", ""))


class NotModified(HttpMiddleware):
    """A GET or HEAD whose ``If-None-Match`` names the answer's ETag (weak comparison,
    RFC 9110 13.1.2) gets 304 with the validators and no body. Only a 200 is replaced, so
    an authorisation or any other failure still answers as it would."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        wanted = dict(scope.get("headers") or []).get(b"if-none-match")
        if scope["method"] not in ("GET", "HEAD") or wanted is None:
            await self.app(scope, receive, send)
            return
        tags = {_weak(t) for t in wanted.split(b",")}
        replaced = False

        async def watched(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return  # the body the 304 leaves out
            if message["type"] == "http.response.start" and message["status"] == 200:
                headers = message.get("headers") or []
                etag = dict(headers).get(b"etag")
                if etag is not None and (b"*" in tags or _weak(etag) in tags):
                    replaced = True
                    kept = [(k, v) for k, v in headers if k in _VALIDATORS]
                    await send({"type": "http.response.start", "status": 304, "headers": kept})
                    await send({"type": "http.response.body", "body": b""})
                    return
            await send(message)

        await self.app(scope, receive, watched)


_VALIDATORS = frozenset({b"etag", b"cache-control", b"vary", b"expires", b"content-location", b"date"})


def _weak(tag: bytes) -> bytes:
    tag = tag.strip()
    return tag[2:] if tag.startswith(b"W/") else tag


class Edge(HttpMiddleware):
    """Metrics for every request, and the audit record of each mutating one."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        begun, status = time.perf_counter(), [500]

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                LATENCY.labels(scope["method"], _route(scope)).observe(time.perf_counter() - begun)
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            REQUESTS.labels(scope["method"], _route(scope), str(status[0])).inc()
            if scope["method"] in MUTATING:
                await _audit(scope, status[0])


def _route(scope: Scope) -> str:
    route: Any = scope.get("route")
    return str(getattr(route, "path_format", None) or "unmatched")


async def _audit(scope: Scope, status: int) -> None:
    runtime = getattr(scope["app"].state, "runtime", None)
    accounts = None if runtime is None else runtime.accounts
    principal = (scope.get("state") or {}).get("principal")
    route = _route(scope)
    # Calls without valid credentials changed nothing and are not recorded: anyone could
    # otherwise fill the log (logins record their own failures, rate-limited).
    if accounts is None or principal is None or route.startswith("/v1/auth/"):
        return
    try:
        await accounts.record(principal.subject, f"{scope['method']} {route}", scope.get("path", ""), str(status))
    except Exception as exc:  # the answer is sent; a failed record is an operator's alarm
        log.error("audit record of %s %s not written: %s", scope["method"], route, type(exc).__name__)
