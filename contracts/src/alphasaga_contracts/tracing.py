"""Which trace a saga is recorded in: a pure function of its id and its start's
``traceparent``, kept apart from the message models so that a reader that only shows a
trace id (``alphasaga status``) loads no pydantic."""

from __future__ import annotations

from typing import Any


def saga_trace_id(saga_id: Any, traceparent: str) -> str:
    """The trace a saga is recorded in (32 hex digits): its start request's, when that
    carried a valid ``traceparent``; otherwise the saga id's own 128 bits, so that a saga
    started from redis-cli has a trace id anyone can work out from its id."""
    parts = traceparent.split("-")
    if len(parts) == 4 and len(parts[1]) == 32 and parts[1] != "0" * 32:
        try:
            int(parts[1], 16)
        except ValueError:
            pass
        else:
            return parts[1].lower()
    return str(saga_id).replace("-", "").lower()
