"""What each PostgreSQL role may do on the accounts tables (``alphasaga_shared.eventstore.
roles``): the front ends own them; no service reads them. The audit log's append-only
triggers stay the second wall."""

from __future__ import annotations

from alphasaga_shared.eventstore.roles import Tables

from .store import LEDGER

FRONT_END = "api"
ALL = "SELECT, INSERT, UPDATE, DELETE"
GRANTS: dict[str, dict[str, str]] = {
    table: {FRONT_END: ALL} for table in ("users", "sessions", "refresh_tokens", "api_keys", "saga_owners")
} | {
    "audit_log": {FRONT_END: "SELECT, INSERT"},
    "rate_limits": {FRONT_END: ALL},  # the API's counters on JetStream (ratelimits.py)
    LEDGER: {FRONT_END: "SELECT"},  # read at start (alphasaga migrate applies them)
}

TABLES = Tables(__package__ or "alphasaga_accounts", LEDGER, GRANTS)
