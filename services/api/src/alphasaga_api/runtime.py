"""What every request uses, made once per process (the composition root is ``app.py``)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import jwt

from alphasaga_accounts import Accounts, AuthFailed
from alphasaga_client import AlphaSaga

from .ratelimit import RateLimiter
from .settings import ApiSettings

ALGORITHM = "HS256"
ISSUER = "alphasaga"


@dataclass
class Tokens:
    """Access tokens: short-lived JWTs naming the session, so that a revoked session is
    refused at once (the session is checked on every request)."""

    key: str
    ttl: dt.timedelta
    clock: Callable[[], dt.datetime]

    def issue(self, subject: str, session_id: uuid.UUID) -> str:
        now = self.clock()
        claims = {"iss": ISSUER, "sub": subject, "sid": str(session_id), "iat": now, "exp": now + self.ttl}
        return jwt.encode(claims, self.key, algorithm=ALGORITHM)

    def session_of(self, token: str) -> uuid.UUID:
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "sid", "sub"], "verify_iat": False},
                leeway=0,
            )
            session_id = uuid.UUID(str(claims["sid"]))
        except (jwt.PyJWTError, ValueError):
            raise AuthFailed("invalid or expired access token") from None
        return session_id


@dataclass
class Runtime:
    client: AlphaSaga
    accounts: Accounts
    limiter: RateLimiter
    tokens: Tokens
    api: ApiSettings
