"""The rules of accounts as pure functions: roles, the password policy, the lockout window,
and how secrets are made and hashed. No I/O, so the tests read like the rules."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Role = Literal["viewer", "researcher", "admin"]
# Each role may do what the ones before it may.
ROLES: tuple[Role, ...] = ("viewer", "researcher", "admin")

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # argon2 hashes anything, but a megabyte password is an attack
# The reference design: 5 failed logins within 15 minutes lock the account for 30.
LOCKOUT_FAILURES = 5
LOCKOUT_WINDOW = dt.timedelta(minutes=15)
LOCKOUT_FOR = dt.timedelta(minutes=30)

KEY_PREFIX = "ask_"


def allows(role: str, needed: Role) -> bool:
    """Whether ``role`` may do what ``needed`` may."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"a password needs at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"a password has at most {MAX_PASSWORD_LENGTH} characters"
    return None


@dataclass(frozen=True, slots=True)
class FailureOutcome:
    recent_failures: list[dt.datetime]
    locked_until: dt.datetime | None


def after_failure(recent: Sequence[dt.datetime], now: dt.datetime) -> FailureOutcome:
    """A failed login at ``now``: the failures still inside the window, and a lock when
    they reach the limit (the failures are then cleared: the lock is the consequence)."""
    kept = [t for t in recent if now - t < LOCKOUT_WINDOW] + [now]
    if len(kept) >= LOCKOUT_FAILURES:
        return FailureOutcome([], now + LOCKOUT_FOR)
    return FailureOutcome(kept, None)


def still_locked(locked_until: dt.datetime | None, now: dt.datetime) -> bool:
    return locked_until is not None and now < locked_until


def digest(secret: str) -> str:
    """Refresh tokens and API keys carry 256 random bits: a plain SHA-256 is safe to store
    and cheap to check on every request (a slow hash is for low-entropy passwords)."""
    return hashlib.sha256(secret.encode()).hexdigest()


REFRESH_TOKEN_BYTES = 32
_REFRESH_TOKEN = re.compile(rf"^[A-Za-z0-9_-]{{{len(secrets.token_urlsafe(REFRESH_TOKEN_BYTES))}}}$")


def new_refresh_token() -> str:
    return secrets.token_urlsafe(REFRESH_TOKEN_BYTES)


def is_refresh_token(token: str) -> bool:
    """Whether ``token`` has the shape of one ``new_refresh_token`` makes (an access token
    or an API key has not), so that anything else is refused without a lookup."""
    return _REFRESH_TOKEN.fullmatch(token) is not None


def new_api_key() -> tuple[str, str]:
    """(prefix, key): the prefix finds the key's row, the rest is the secret."""
    prefix = secrets.token_hex(6)
    return prefix, f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"


def key_prefix(key: str) -> str | None:
    """The lookup prefix of something presented as a key, or None when it is not one."""
    if not key.startswith(KEY_PREFIX):
        return None
    prefix, sep, secret = key[len(KEY_PREFIX) :].partition("_")
    if not sep or len(prefix) != 12 or not secret or len(key) > 200:
        return None
    return prefix
