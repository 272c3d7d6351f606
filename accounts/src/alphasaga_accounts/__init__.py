"""Accounts of the HTTP API and the MCP server: users, sessions, API keys, roles, and the
hash-chained audit log. ``Accounts`` is the way in (``AlphaSaga.accounts()``); the SQL is
in ``store`` (users, sessions, refresh tokens, keys, saga owners) and ``audit`` (the log)."""

from __future__ import annotations

from .audit import AuditRecord, Verification
from .policy import ROLES, Role, allows
from .service import (
    Accounts,
    ApiKey,
    AuthFailed,
    Disabled,
    Locked,
    Principal,
    SessionRevoked,
    User,
    WeakPassword,
)

__all__ = [
    "ROLES",
    "Accounts",
    "ApiKey",
    "AuditRecord",
    "AuthFailed",
    "Disabled",
    "Locked",
    "Principal",
    "Role",
    "SessionRevoked",
    "User",
    "Verification",
    "WeakPassword",
    "allows",
]
