"""Who is calling, and whether their role allows the route. Every route states its role in
the OpenAPI document (``x-role``); ``authorize`` reads it from there, so the document, the
checks and the role table test cannot disagree."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Depends, Request

from alphasaga_accounts import AuthFailed, Principal, Role
from alphasaga_client.usecases import Caller

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


async def caller(request: Request, who: Annotated[Principal, Depends(authorize)]) -> Caller:
    """The caller as the use cases take it: who it is, and the api's client and accounts."""
    rt = runtime(request)
    return Caller(who, rt.client, rt.accounts)


Acting = Annotated[Caller, Depends(caller)]


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
