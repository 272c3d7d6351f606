"""Saga persistence: eventsourcing's Mapper (JSON transcoder, no compressor or cipher,
so stored events stay readable in SQL) over our asyncpg event store, with snapshots
that bound the cost of rebuilding a long saga."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from eventsourcing.domain import Snapshot
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    StoredEvent,
    UUIDAsHex,
)

from alphasaga_shared.eventstore import Conn, EventStore, NewEvent, RecordedEvent

from .saga import Saga


def saga_stream(saga_id: uuid.UUID) -> str:
    return f"saga-{saga_id}"


def make_mapper() -> Mapper[uuid.UUID]:
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DatetimeAsISO(), DecimalAsStr()):
        transcoder.register(transcoding)
    return Mapper(transcoder=transcoder)


class SagaRepository:
    def __init__(self, store: EventStore, *, snapshot_every: int = 100) -> None:
        self.store = store
        self.mapper = make_mapper()
        self.snapshot_every = snapshot_every

    async def load(self, saga_id: uuid.UUID, *, use_snapshot: bool = True) -> Saga | None:
        saga: Saga | None = None
        after = 0
        if use_snapshot:
            saga = await self._load_snapshot(saga_id)
            after = saga.version if saga is not None else 0
        rows = await self.store.read_stream(saga_stream(saga_id), after_version=after)
        for row in rows:
            saga = self.to_domain_event(saga_id, row).mutate(saga)
        return saga

    def fold(self, saga_id: uuid.UUID, rows: Sequence[RecordedEvent]) -> Saga | None:
        saga: Saga | None = None
        for row in rows:
            saga = self.to_domain_event(saga_id, row).mutate(saga)
        return saga

    def to_domain_event(self, saga_id: uuid.UUID, row: RecordedEvent) -> Any:
        stored = StoredEvent(
            originator_id=saga_id,
            originator_version=row.version,
            topic=row.type,
            state=json.dumps(row.data).encode(),
        )
        return self.mapper.to_domain_event(stored)

    def to_new_events(self, pending: Sequence[Any], metadata: dict[str, Any]) -> list[NewEvent]:
        rows: list[NewEvent] = []
        for domain_event in pending:
            stored = self.mapper.to_stored_event(domain_event)
            rows.append(
                NewEvent(
                    type=stored.topic,
                    data=json.loads(stored.state),
                    metadata=metadata,
                    event_id=uuid.uuid5(uuid.UUID(str(stored.originator_id)), str(stored.originator_version)),
                )
            )
        return rows

    def due_for_snapshot(self, old_version: int, new_version: int) -> bool:
        n = self.snapshot_every
        return n > 0 and new_version // n > old_version // n

    async def save_snapshot(self, saga: Saga, conn: Conn | None = None) -> None:
        stored = self.mapper.to_stored_event(Snapshot.take(saga))
        sql = (
            "INSERT INTO snapshots (stream_id, version, type, state) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, type = excluded.type,"
            " state = excluded.state, recorded_at = now() WHERE snapshots.version < excluded.version"
        )
        args = (saga_stream(saga.id), saga.version, stored.topic, json.loads(stored.state))
        if conn is None:
            async with self.store.pool.acquire() as c:
                await c.execute(sql, *args)
        else:
            await conn.execute(sql, *args)

    async def _load_snapshot(self, saga_id: uuid.UUID) -> Saga | None:
        async with self.store.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT version, type, state FROM snapshots WHERE stream_id = $1", saga_stream(saga_id)
            )
        if row is None:
            return None
        stored = StoredEvent(
            originator_id=saga_id,
            originator_version=row["version"],
            topic=row["type"],
            state=json.dumps(row["state"]).encode(),
        )
        snapshot: Any = self.mapper.to_domain_event(stored)
        saga: Saga = snapshot.mutate(None)
        return saga
