"""What the orchestrator needs from its storage, as a port: the unit of work that commits a
batch of decisions, the inbox, sagas' stored rows and the durable deadlines.

``sagastore.SagaStore`` is the PostgreSQL adapter; the handler tests run on an in-memory
one (``tests/support/memory_sagastore.py``). The data the port speaks in is here, so that
neither side imports the other's details.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from alphasaga_saga.aggregate import TimerKind
from alphasaga_shared.eventstore import JsonText, NewEvent


class Conflict(Exception):
    """A commit wrote nothing because of a concurrent change: a message already in the
    inbox, or a saga another writer moved on. Decide again on fresh state."""


class SagaMovedOn(Conflict):
    """A saga decided on is no longer at the version its decision started from."""


@dataclass(frozen=True, slots=True)
class Timer:
    """A saga's pending deadline, as the timer index holds it."""

    saga_id: uuid.UUID
    due_at: dt.datetime
    kind: TimerKind
    step: str
    attempt: int
    version: int = 0  # the saga's version when the deadline was set


@dataclass(frozen=True, slots=True)
class Snapshot:
    stream_id: str
    version: int
    type: str
    state: JsonText


@dataclass(slots=True)
class Changes:
    """What one commit writes. ``expected`` holds every saga decided on, with the version
    its decision started from (the guard); ``events`` are (stream, expected version or
    None for an outbox stream, ordinal within the commit, row)."""

    inbox: list[str] = field(default_factory=list)
    events: list[tuple[str, int | None, int, NewEvent]] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    cleared_timers: list[uuid.UUID] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)
    expected: dict[str, int] = field(default_factory=dict)
    # The payload of the NOTIFY sent at commit (``outbox_rows.notice``); None, no NOTIFY.
    notice: str | None = None


@dataclass(frozen=True, slots=True)
class StoredRow:
    """A saga's snapshot or one of its events, with its data as JSON text."""

    snapshot: bool
    saga_id: uuid.UUID
    version: int
    type: str
    data: str


class SagaStorage(Protocol):
    async def commit(self, changes: Changes) -> None:
        """Write ``changes`` atomically, or nothing and raise ``Conflict``."""

    async def handled(self, message_ids: Sequence[str]) -> set[str]:
        """Which of ``message_ids`` are in the inbox already."""

    async def load_rows(self, saga_ids: Sequence[uuid.UUID], known: Mapping[uuid.UUID, int]) -> list[StoredRow]:
        """For each saga: the events after the version in ``known``; for a saga not in it,
        its snapshot (if any) and the events after the snapshot. Ordered by saga, the
        snapshot first, then by version."""

    async def due_timers(self, limit: int) -> list[Timer]:
        """Deadlines due now, the oldest first."""

    async def drop_fired_timer(self, timer: Timer, message_id: str) -> None:
        """Forget ``timer`` once the message that fired it is in the inbox."""
