"""Signing in to the explorer: a cookie the browser sends only to ``/explorer`` pages, on
same-site requests (``SameSite=Strict``), that JavaScript cannot read (``HttpOnly``).

With a username and password, the cookie holds a token naming the accounts' session (the
session is checked on every request, so a logout or a disabled user takes effect at
once); the token's audience is the explorer's, so the HTTP API refuses it as a bearer. With
an API key (the development key ``make up`` prints), the cookie holds the key."""

from __future__ import annotations

import datetime as dt
import uuid

import jwt
from fastapi import Request

from alphasaga_accounts import AuthFailed, Principal
from alphasaga_client.usecases import Caller

from ..problems import Problem
from ..runtime import ALGORITHM, ISSUER
from ..security import runtime

COOKIE = "alphasaga_explorer"
PATH = "/explorer"
AUDIENCE = "alphasaga-explorer"
# A browser tab stays signed in for a working day; the session itself can end sooner.
LIFETIME = dt.timedelta(hours=12)
KEY_PREFIX = "ask_"
# Mutating calls come from the explorer's own scripts, which send this header: a form or
# a link from another site cannot (and the cookie is not sent cross-site anyway).
ACTION_HEADER = "x-alphasaga-explorer"


def session_cookie(request: Request, subject: str, session_id: uuid.UUID) -> str:
    rt = runtime(request)
    now = rt.tokens.clock()
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "sid": str(session_id), "iat": now, "exp": now + LIFETIME}
    return jwt.encode(claims, rt.tokens.key, algorithm=ALGORITHM)


async def principal_of(request: Request) -> Principal | None:
    """The signed-in principal, or None (no cookie, or one that no longer holds)."""
    value = request.cookies.get(COOKIE, "")
    if not value or len(value) > 4096:
        return None
    rt = runtime(request)
    try:
        if value.startswith(KEY_PREFIX):
            principal = await rt.accounts.key_principal(value)
        else:
            principal = await rt.accounts.session_principal(_session_of(value, rt.tokens.key))
    except AuthFailed:
        return None
    request.state.principal = principal  # the edge's audit record names who acted
    return principal


def _session_of(token: str, key: str) -> uuid.UUID:
    try:
        claims = jwt.decode(
            token, key, algorithms=[ALGORITHM], issuer=ISSUER, audience=AUDIENCE, options={"require": ["exp", "sid"]}
        )
        return uuid.UUID(str(claims["sid"]))
    except (jwt.PyJWTError, ValueError):
        raise AuthFailed("the explorer's sign-in has expired") from None


async def caller(request: Request) -> Caller | None:
    principal = await principal_of(request)
    if principal is None:
        return None
    rt = runtime(request)
    return Caller(principal, rt.client, rt.accounts)


async def acting(request: Request) -> Caller:
    """The caller of an action (a script's call): 401 when not signed in, 403 when the
    call does not come from the explorer's scripts."""
    if request.headers.get(ACTION_HEADER) != "1":
        raise Problem(403, "forbidden", f"explorer actions are sent by its pages (header {ACTION_HEADER})")
    found = await caller(request)
    if found is None:
        raise Problem(401, "unauthorized", "sign in to the explorer first")
    return found
