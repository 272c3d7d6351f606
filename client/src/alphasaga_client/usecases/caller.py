"""Who asks: a principal with its role, and what the use cases act through."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from alphasaga_accounts import Accounts, Principal, Role
from alphasaga_shared.errors import Forbidden

from ..api import AlphaSaga

# The local operator (``alphasaga mcp`` over stdio): whoever can run that can reach the
# servers directly anyway.
LOCAL = Principal("local:operator", "admin")


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal
    client: AlphaSaga
    accounts: Accounts

    def require(self, needed: Role) -> None:
        """Refuse (``Forbidden``) a caller whose role does not reach ``needed``."""
        if not self.principal.may(needed):
            raise Forbidden(f"this needs the {needed} role; the caller has {self.principal.role}")

    @property
    def subject(self) -> str:
        return self.principal.subject


def idempotent_message_id(principal: Principal, key: str) -> str:
    """The message id of a submit retried with ``key``: the orchestrator derives the saga
    from it, so one caller's key always names one saga, and two callers' keys never do."""
    return "idem-" + hashlib.sha256(f"{principal.subject}\n{key}".encode()).hexdigest()[:40]
