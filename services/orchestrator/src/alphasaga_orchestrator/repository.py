"""Saga persistence: eventsourcing's Mapper (JSON transcoder, no compressor or cipher,
so stored events stay readable in SQL) over our asyncpg event store."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    StoredEvent,
    UUIDAsHex,
)

from alphasaga_shared.eventstore import EventStore, NewEvent, RecordedEvent

from .saga import Saga


def saga_stream(saga_id: uuid.UUID) -> str:
    return f"saga-{saga_id}"


def make_mapper() -> Mapper[uuid.UUID]:
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DatetimeAsISO(), DecimalAsStr()):
        transcoder.register(transcoding)
    return Mapper(transcoder=transcoder)


class SagaRepository:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.mapper = make_mapper()

    async def load(self, saga_id: uuid.UUID) -> Saga | None:
        return self.fold(saga_id, await self.store.read_stream(saga_stream(saga_id)))

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
