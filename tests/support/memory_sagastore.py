"""The orchestrator's storage port in memory, for handler tests that run in milliseconds.

It keeps the PostgreSQL adapter's promises (``sagastore.SagaStore``, whose own tests run
on the real database): a commit writes all or nothing; a message already in the inbox, or
a saga that is not at the version its decision started from, is a ``Conflict``; outbox
rows go after whatever their stream holds; a snapshot never replaces a newer one.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from alphasaga_orchestrator.storage import (
    Changes,
    Conflict,
    SagaMovedOn,
    Snapshot,
    StoredRow,
    Timer,
)
from alphasaga_saga.streams import saga_id_of_stream, saga_stream
from alphasaga_shared.eventstore import NewEvent


def _text(data: object) -> str:
    return data if isinstance(data, str) else json.dumps(data)


@dataclass
class MemorySagaStore:
    streams: dict[str, list[NewEvent]] = field(default_factory=dict)
    inbox: set[str] = field(default_factory=set)
    timers: dict[uuid.UUID, Timer] = field(default_factory=dict)
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    commits: int = 0
    # A test may make the next commits fail this way (a race it stages).
    fail_next: list[Exception] = field(default_factory=list)
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    async def commit(self, changes: Changes) -> None:
        if self.fail_next:
            raise self.fail_next.pop(0)
        if len(set(changes.inbox)) < len(changes.inbox) or self.inbox.intersection(changes.inbox):
            raise Conflict("a message is in the inbox already")
        for stream, expected in changes.expected.items():
            if len(self.streams.get(stream, [])) != expected:
                raise SagaMovedOn(f"{stream} is not at version {expected}")
        self.inbox.update(changes.inbox)
        for stream, _, _, row in changes.events:  # in order: ordinals follow the stream's end
            self.streams.setdefault(stream, []).append(row)
        for timer in changes.timers:
            self.timers[timer.saga_id] = timer
        for saga_id in changes.cleared_timers:
            self.timers.pop(saga_id, None)
        for snap in changes.snapshots:
            old = self.snapshots.get(snap.stream_id)
            if old is None or old.version < snap.version:
                self.snapshots[snap.stream_id] = snap
        self.commits += 1

    async def handled(self, message_ids: Sequence[str]) -> set[str]:
        return {m for m in message_ids if m in self.inbox}

    async def load_rows(self, saga_ids: Sequence[uuid.UUID], known: Mapping[uuid.UUID, int]) -> list[StoredRow]:
        rows: list[StoredRow] = []
        for saga_id in saga_ids:
            stream = saga_stream(saga_id)
            after = known.get(saga_id, 0)
            snap = self.snapshots.get(stream) if after == 0 else None
            if snap is not None:
                rows.append(StoredRow(True, saga_id, snap.version, snap.type, snap.state))
                after = snap.version
            for version, row in enumerate(self.streams.get(stream, []), start=1):
                if version > after:
                    rows.append(StoredRow(False, saga_id, version, row.type, _text(row.data)))
        return rows

    async def due_timers(self, limit: int) -> list[Timer]:
        due = sorted((t for t in self.timers.values() if t.due_at <= self.now), key=lambda t: t.due_at)
        return due[:limit]

    async def drop_fired_timer(self, timer: Timer, message_id: str) -> None:
        held = self.timers.get(timer.saga_id)
        same = held is not None and (held.kind, held.step, held.attempt) == (timer.kind, timer.step, timer.attempt)
        if same and message_id in self.inbox:
            del self.timers[timer.saga_id]

    # --- for the tests' assertions ---

    def types(self, stream: str) -> list[str]:
        return [row.type for row in self.streams.get(stream, [])]

    def sagas(self) -> list[uuid.UUID]:
        return [s for stream in self.streams if (s := saga_id_of_stream(stream)) is not None]
