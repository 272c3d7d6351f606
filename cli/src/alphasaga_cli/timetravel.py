"""Replay: a saga's events one at a time, each with the state it leaves behind.

Reads nothing but the event store. The state is ``state_of`` of the aggregate folded
from the first event up to that one, so ``--to N`` shows exactly what the orchestrator
knew after event N."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from alphasaga_orchestrator.repository import SagaRepository
from alphasaga_orchestrator.saga import Saga, state_of
from alphasaga_shared.eventstore import RecordedEvent

from .sagas import event_name
from .timefmt import iso

_ABSENT: Any = object()
# Bookkeeping of the eventsourcing library, already shown as the recorded time.
HIDDEN_DATA = frozenset({"timestamp", "originator_topic"})


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
        if self.before is not _ABSENT:
            out["before"] = self.before
        if self.after is not _ABSENT:
            out["after"] = self.after
        return out


@dataclass(frozen=True, slots=True)
class Frame:
    number: int  # 1-based position in the saga's stream
    row: RecordedEvent
    state: dict[str, Any]
    changes: list[Change]

    @property
    def event(self) -> str:
        return event_name(self.row.type)

    def as_json(self, *, diff: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "number": self.number,
            "version": self.row.version,
            "event": self.event,
            "type": self.row.type,
            "recorded_at": iso(self.row.recorded_at),
            "data": self.row.data,
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
            changes.extend(diff(before.get(key, _ABSENT), after.get(key, _ABSENT), sub))
        return changes
    if before == after and before is not _ABSENT:
        return []
    return [Change(path, before, after)]


def frames(saga_id: uuid.UUID, rows: Sequence[RecordedEvent], repo: SagaRepository) -> Iterator[Frame]:
    saga: Saga | None = None
    previous: dict[str, Any] = {}
    for number, row in enumerate(rows, start=1):
        try:
            saga = repo.to_domain_event(saga_id, row).mutate(saga)
        except Exception as exc:
            raise ReplayError(number, row, exc) from exc
        state = state_of(saga)
        yield Frame(number, row, state, diff(previous, state))
        previous = state


def format_value(value: Any) -> str:
    return "-" if value is _ABSENT else json.dumps(value, default=str, ensure_ascii=False)


def render(frame: Frame, *, diff_only: bool) -> list[str]:
    """Lines for one event: a header, then the state after it (or only what changed)."""
    data = " ".join(f"{k}={format_value(v)}" for k, v in frame.row.data.items() if k not in HIDDEN_DATA)
    lines = [f"#{frame.number} {iso(frame.row.recorded_at)} {frame.event} {data}".rstrip()]
    if diff_only:
        lines.extend(f"    {c.path}: {format_value(c.before)} -> {format_value(c.after)}" for c in frame.changes)
    else:
        lines.extend(f"    {key}: {format_value(value)}" for key, value in frame.state.items())
    return lines
