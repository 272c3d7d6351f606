"""Who is calling, and whether their role allows the route. Every route states its role in
the OpenAPI document (``x-role``); ``authorize`` reads it from there, so the document, the
checks and the role table test cannot disagree."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from fastapi import Request

from alphasaga_client.accounts import AuthFailed, Principal, Role
from alphasaga_contracts.research import ResearchRequest

from .problems import Problem
from .runtime import Runtime

Access = Literal["public", "viewer", "researcher", "admin"]
ANONYMOUS = Principal("anonymous", "none")


def role(needed: Access) -> dict[str, Any]:
    """The route's ``openapi_extra``: its role, and that it takes a bearer credential."""
    extra: dict[str, Any] = {"x-role": needed}
    if needed != "public":
        extra["security"] = [{"bearer": []}]
    return extra


def runtime(request: Request) -> Runtime:
    found: Runtime = request.app.state.runtime
    return found


async def authorize(request: Request) -> Principal:
    """The caller, checked against the route's role: 401 without valid credentials, 403
    when the role does not reach."""
    route: Any = request.scope.get("route")
    needed: Access | None = (getattr(route, "openapi_extra", None) or {}).get("x-role")
    if needed is None:
        raise RuntimeError(f"route {getattr(route, 'path', '?')} states no role")  # a bug: every route has one
    if needed == "public":
        return ANONYMOUS
    principal = await authenticate(request)
    request.state.principal = principal
    if not principal.may(_as_role(needed)):
        raise Problem(403, "forbidden", f"this needs the {needed} role; the caller has {principal.role}")
    return principal


async def authenticate(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise AuthFailed("send Authorization: Bearer <access token or API key>")
    rt = runtime(request)
    credential = credential.strip()
    if credential.startswith("ask_"):
        return await rt.accounts.key_principal(credential)
    return await rt.accounts.session_principal(rt.tokens.session_of(credential))


def _as_role(needed: Access) -> Role:
    assert needed != "public"
    return needed


def data_path_refusal(principal: Principal, request: ResearchRequest) -> str | None:
    """Why ``principal`` may not submit ``request``, if it may not. A ``data_path`` reads a
    file on the servers: only an admin, who also decides what lies in the data directory,
    names one; anyone else gives a built-in dataset. The answer names no path and no
    setting of the server."""
    if request.data_path is not None and not principal.may("admin"):
        return f"data_path names a file on the server: only an admin may give one (the caller has {principal.role})"
    return None


def idempotent_message_id(principal: Principal, key: str) -> str:
    """The message id of a submit retried with ``key``: the orchestrator derives the saga
    from it, so one caller's key always names one saga, and two callers' keys never do."""
    return "idem-" + hashlib.sha256(f"{principal.subject}\n{key}".encode()).hexdigest()[:40]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def limit(request: Request, name: str, who: str, per_minute: int) -> None:
    verdict = await runtime(request).limiter.hit(name, who, per_minute)
    if not verdict.allowed:
        raise Problem(
            429,
            "rate-limited",
            f"over {per_minute} {name} requests a minute: retry after {verdict.retry_after_s} s",
            {"Retry-After": str(verdict.retry_after_s)},
        )
