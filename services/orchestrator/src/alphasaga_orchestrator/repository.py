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

from alphasaga_shared.eventstore import Conn, EventStore, JsonText, NewEvent, RecordedEvent

from .saga import Saga

# Sagas by stream id and the version already known (0: none): for a known one the events
# after it; for another its snapshot, then the events after the snapshot.
_LOAD_MANY = """
WITH wanted AS (SELECT * FROM unnest($1::text[], $2::int[]) AS w(stream_id, after))
SELECT true AS snapshot, s.stream_id, s.version, s.type, s.state::text AS data
FROM snapshots s JOIN wanted w USING (stream_id) WHERE w.after = 0
UNION ALL
SELECT false, e.stream_id, e.version, e.type, e.data::text
FROM wanted w JOIN events e USING (stream_id)
WHERE e.version > CASE WHEN w.after > 0 THEN w.after
                       ELSE coalesce((SELECT s.version FROM snapshots s WHERE s.stream_id = w.stream_id), 0) END
ORDER BY stream_id, snapshot DESC, version
"""


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

    async def load_many(
        self, saga_ids: Sequence[uuid.UUID], known: dict[uuid.UUID, Saga] | None = None
    ) -> dict[uuid.UUID, Saga | None]:
        """Several sagas in one round trip. A saga in ``known`` (as this process last
        committed it) is moved on by the events after its version, if any; any other is
        read from its snapshot and the events after that."""
        known = known or {}
        streams = [saga_stream(s) for s in saga_ids]
        after = [known[s].version if s in known else 0 for s in saga_ids]
        sagas: dict[uuid.UUID, Saga | None] = {s: known.get(s) for s in saga_ids}
        async with self.store.pool.acquire() as conn:
            rows = await conn.fetch(_LOAD_MANY, streams, after)
        for row in rows:
            saga_id = uuid.UUID(row["stream_id"].removeprefix("saga-"))
            if row["snapshot"]:
                sagas[saga_id] = self._from_snapshot(saga_id, row["version"], row["type"], row["data"])
                continue
            stored = StoredEvent(
                originator_id=saga_id, originator_version=row["version"], topic=row["type"], state=row["data"].encode()
            )
            domain_event: Any = self.mapper.to_domain_event(stored)
            sagas[saga_id] = domain_event.mutate(sagas[saga_id])
        return sagas

    def snapshot_row(self, saga: Saga) -> tuple[str, int, str, JsonText]:
        stored = self.mapper.to_stored_event(Snapshot.take(saga))
        return saga_stream(saga.id), saga.version, stored.topic, JsonText(stored.state.decode())

    def _from_snapshot(self, saga_id: uuid.UUID, version: int, topic: str, state: Any) -> Saga:
        """``state`` as parsed JSON, or as its text (the hot path reads it as text)."""
        text = state if isinstance(state, str) else json.dumps(state)
        stored = StoredEvent(originator_id=saga_id, originator_version=version, topic=topic, state=text.encode())
        snapshot: Any = self.mapper.to_domain_event(stored)
        saga: Saga = snapshot.mutate(None)
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
            state=(row.data if isinstance(row.data, str) else json.dumps(row.data)).encode(),
        )
        return self.mapper.to_domain_event(stored)

    def to_new_events(self, pending: Sequence[Any], metadata: dict[str, Any]) -> list[NewEvent]:
        rows: list[NewEvent] = []
        for domain_event in pending:
            stored = self.mapper.to_stored_event(domain_event)
            rows.append(
                NewEvent(
                    type=stored.topic,
                    data=JsonText(stored.state.decode()),
                    metadata=metadata,
                    event_id=uuid.uuid5(uuid.UUID(str(stored.originator_id)), str(stored.originator_version)),
                )
            )
        return rows

    def due_for_snapshot(self, old_version: int, new_version: int) -> bool:
        n = self.snapshot_every
        return n > 0 and new_version // n > old_version // n

    async def save_snapshot(self, saga: Saga, conn: Conn | None = None) -> None:
        sql = (
            "INSERT INTO snapshots (stream_id, version, type, state) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, type = excluded.type,"
            " state = excluded.state, recorded_at = now() WHERE snapshots.version < excluded.version"
        )
        args = self.snapshot_row(saga)
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
        return None if row is None else self._from_snapshot(saga_id, row["version"], row["type"], row["state"])
