"""Logins: a short-lived access token and a refresh token that is rotated on every use."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from alphasaga_accounts import Principal
from alphasaga_accounts.service import Login

from . import models
from .problems import Problem
from .security import authorize, client_address, limit, role, runtime

router = APIRouter(prefix="/v1/auth", dependencies=[Depends(authorize)])


def _tokens(request: Request, login: Login) -> models.Tokens:
    rt = runtime(request)
    return models.Tokens(
        access_token=rt.tokens.issue(f"user:{login.user.username}", login.session_id),
        expires_in=int(rt.tokens.ttl.total_seconds()),
        refresh_token=login.refresh_token,
        refresh_expires_at=login.expires_at,
    )


@router.post("/login", response_model=models.Tokens, openapi_extra=role("public"))
async def login(request: Request, body: models.LoginBody) -> models.Tokens:
    """Log in with a username and password. 5 failures within 15 minutes lock the account
    for 30 (423); logins from one address are rate-limited (429)."""
    rt = runtime(request)
    address = client_address(request)
    await limit(request, "login", address, rt.api.login_per_minute)
    return _tokens(request, await rt.accounts.login(body.username, body.password, source=address))


@router.post("/refresh", response_model=models.Tokens, openapi_extra=role("public"))
async def refresh(request: Request, body: models.RefreshBody) -> models.Tokens:
    """A new access token and a new refresh token for a refresh token, which is then used
    up: presenting it again revokes the whole session."""
    rt = runtime(request)
    await limit(request, "login", client_address(request), rt.api.login_per_minute)
    return _tokens(request, await rt.accounts.refresh(body.refresh_token))


@router.post("/logout", status_code=204, openapi_extra=role("viewer"))
async def logout(request: Request, who: Annotated[Principal, Depends(authorize)]) -> Response:
    """End the session of the access token used (an API key has none: revoke it instead)."""
    if who.session_id is None:
        raise Problem(400, "no-session", "an API key has no session to end: revoke the key instead")
    await runtime(request).accounts.logout(who.session_id, actor=who.subject)
    return Response(status_code=204)
