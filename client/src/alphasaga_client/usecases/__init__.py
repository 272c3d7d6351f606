"""The use cases of AlphaSaga's front ends, one handler each, for a caller (a principal with
a role). The HTTP routes, the MCP tools and the explorer only translate: they find
the caller, call a handler, and shape its answer or its refusal (``alphasaga_shared.errors``)
into theirs. Every rule about who may do what, and every step that must commit together,
is written here once.

- ``caller``: the caller, and the role check;
- ``research``: submit as a principal, cancel as a principal, and the reads of sagas;
- ``campaigns``: submit a campaign as a principal, and its reads;
- ``admin``: dead letters, users and API keys;
- ``system``: readiness and the services' consumer-group lag.
"""

from __future__ import annotations

from .caller import LOCAL, Caller, idempotent_message_id

__all__ = ["LOCAL", "Caller", "idempotent_message_id"]
