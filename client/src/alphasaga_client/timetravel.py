"""Time travel: a saga's events one at a time, each with the state it leaves behind and
what changed. The state is ``state_of`` of the aggregate folded from the first event up
to that one: exactly what the orchestrator knew after event N."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from alphasaga_saga.aggregate import Saga, state_of
from alphasaga_saga.mapper import SagaMapper, make_mapper
from alphasaga_shared.eventstore import RecordedEvent

from .timefmt import iso

# A key that is not there, on one side of a change.
ABSENT: Any = object()


def event_name(event_type: str) -> str:
    """``alphasaga_orchestrator.saga:Saga.StepCommanded`` -> ``StepCommanded``."""
    return event_type.rsplit(".", 1)[-1].rsplit(":", 1)[-1]


_TRANSCODER = make_mapper().transcoder


def readable(data: Any) -> Any:
    """An event's data with the event store's encodings undone: a saga id as a UUID, not
    ``{"_type_": "uuid_hex", "_data_": ...}``."""
    return _TRANSCODER.decode(json.dumps(data).encode())


class ReplayError(Exception):
    """An event cannot be applied to the state before it."""

    def __init__(self, number: int, row: RecordedEvent, exc: Exception) -> None:
        super().__init__(f"event #{number} ({event_name(row.type)}, version {row.version}) cannot be applied: {exc}")
        self.number = number


@dataclass(frozen=True, slots=True)
class Change:
    path: str
    before: Any
    after: Any

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path}
        if self.before is not ABSENT:
            out["before"] = self.before
        if self.after is not ABSENT:
            out["after"] = self.after
        return out


@dataclass(frozen=True, slots=True)
class Frame:
    number: int  # 1-based position in the saga's stream
    row: RecordedEvent
    state: dict[str, Any]
    changes: list[Change]

    @classmethod
    def after(cls, number: int, row: RecordedEvent, saga: Saga | None, previous: dict[str, Any]) -> Frame:
        """The frame of event ``number`` (``row``), ``saga`` folded up to it, ``previous``
        the state before it."""
        state = state_of(saga)
        return cls(number, row, state, diff(previous, state))

    @property
    def event(self) -> str:
        return event_name(self.row.type)

    @property
    def data(self) -> Any:
        """The event's data, readable (see ``readable``)."""
        return readable(self.row.data)

    def as_json(self, *, diff: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "number": self.number,
            "version": self.row.version,
            "event": self.event,
            "type": self.row.type,
            "recorded_at": iso(self.row.recorded_at),
            "data": self.data,
        }
        if diff:
            out["changes"] = [c.as_json() for c in self.changes]
        else:
            out["state"] = self.state
        return out


def select(rows: Sequence[RecordedEvent], *, to: int | None, at: dt.datetime | None) -> list[RecordedEvent]:
    """The events up to the ``to``-th and recorded no later than ``at``."""
    chosen = list(rows[:to] if to is not None else rows)
    if at is not None:
        chosen = [r for r in chosen if r.recorded_at <= at]
    return chosen


def diff(before: Any, after: Any, path: str = "") -> list[Change]:
    """Differences between two JSON values: dicts present on both sides are walked, anything
    else (lists, a key that appears or goes) is one change."""
    if isinstance(before, dict) and isinstance(after, dict):
        changes: list[Change] = []
        for key in [*before, *(k for k in after if k not in before)]:
            sub = f"{path}.{key}" if path else str(key)
            changes.extend(diff(before.get(key, ABSENT), after.get(key, ABSENT), sub))
        return changes
    if before == after and before is not ABSENT:
        return []
    return [Change(path, before, after)]


def frames(saga_id: uuid.UUID, rows: Sequence[RecordedEvent], mapper: SagaMapper) -> Iterator[Frame]:
    saga: Saga | None = None
    previous: dict[str, Any] = {}
    for number, row in enumerate(rows, start=1):
        try:
            saga = mapper.to_domain_event(saga_id, row).mutate(saga)
        except Exception as exc:
            raise ReplayError(number, row, exc) from exc
        frame = Frame.after(number, row, saga, previous)
        yield frame
        previous = frame.state
