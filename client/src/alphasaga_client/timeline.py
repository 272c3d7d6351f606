"""A saga's steps as attempts with their durations, and its trace id, read from its events:
what ``GET /v1/sagas/{id}`` and the MCP ``get_saga`` tool show beside the summary."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from alphasaga_shared.eventstore import RecordedEvent

from .timetravel import event_name

_ENDINGS = {"StepSucceeded": "succeeded", "StepFailed": "failed", "StepTimedOut": "timed_out"}


@dataclass(frozen=True, slots=True)
class Attempt:
    step: str
    attempt: int
    started_at: dt.datetime
    ended_at: dt.datetime | None = None
    outcome: str = "running"
    error: str | None = None

    @property
    def duration_s(self) -> float | None:
        return None if self.ended_at is None else (self.ended_at - self.started_at).total_seconds()

    def as_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "attempt": self.attempt,
            "started_at": self.started_at.isoformat(),
            "ended_at": None if self.ended_at is None else self.ended_at.isoformat(),
            "duration_s": self.duration_s,
            "outcome": self.outcome,
            "error": self.error,
        }


def attempts(rows: Sequence[RecordedEvent]) -> list[Attempt]:
    """Each commanded step attempt, ended by its success, failure or timeout if any."""
    out: list[Attempt] = []
    open_: dict[tuple[str, int], int] = {}
    for row in rows:
        name, data = event_name(row.type), row.data
        key = (str(data.get("step")), int(data.get("attempt", 0) or 0))
        if name == "StepCommanded":
            open_[key] = len(out)
            out.append(Attempt(key[0], key[1], row.recorded_at))
        elif name in _ENDINGS and key in open_:
            at = open_.pop(key)
            begun = out[at]
            out[at] = Attempt(
                begun.step, begun.attempt, begun.started_at, row.recorded_at, _ENDINGS[name], data.get("error")
            )
    return out


def trace_id(saga_id: Any, rows: Sequence[RecordedEvent]) -> str:
    """The W3C trace id the saga is recorded in: its start's traceparent's, else the saga
    id's own 128 bits, as the orchestrator records it (``saga_trace_id``), so that a saga
    started without a trace still has one in Jaeger."""
    from alphasaga_contracts.tracing import saga_trace_id

    first = str(rows[0].data.get("traceparent") or "") if rows else ""
    return saga_trace_id(saga_id, first)
