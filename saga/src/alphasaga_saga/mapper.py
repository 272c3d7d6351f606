"""Sagas to rows and back: eventsourcing's Mapper with the JSON transcoder (no compressor
or cipher, so that stored events stay readable in SQL). What the orchestrator writes and
what every reader folds (the read model, replay, the invariant checker) go through here."""

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

from alphasaga_shared.eventstore import JsonText, NewEvent, RecordedEvent

from .aggregate import Saga


def make_mapper() -> Mapper[uuid.UUID]:
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DatetimeAsISO(), DecimalAsStr()):
        transcoder.register(transcoding)
    return Mapper(transcoder=transcoder)


class SagaMapper:
    """The aggregate's events as rows of the event store, and rows (or a snapshot) folded
    back into the aggregate."""

    def __init__(self) -> None:
        self.mapper = make_mapper()

    # --- reading ---

    def fold(self, saga_id: uuid.UUID, rows: Sequence[RecordedEvent]) -> Saga | None:
        saga: Saga | None = None
        for row in rows:
            saga = self.to_domain_event(saga_id, row).mutate(saga)
        return saga

    def to_domain_event(self, saga_id: uuid.UUID, row: RecordedEvent) -> Any:
        """``row.data`` parsed, or as its JSON text (both are read)."""
        data = row.data if isinstance(row.data, str) else json.dumps(row.data)
        return self.event(saga_id, row.version, row.type, data)

    def event(self, saga_id: uuid.UUID, version: int, topic: str, data: str) -> Any:
        stored = StoredEvent(originator_id=saga_id, originator_version=version, topic=topic, state=data.encode())
        return self.mapper.to_domain_event(stored)

    def from_snapshot(self, saga_id: uuid.UUID, version: int, topic: str, state: str) -> Saga:
        snapshot: Any = self.event(saga_id, version, topic, state)
        saga: Saga = snapshot.mutate(None)
        return saga

    def readable(self, data: Any) -> Any:
        """An event's data with the store's encodings undone: a saga id as a UUID, not
        ``{"_type_": "uuid_hex", "_data_": ...}``."""
        return self.mapper.transcoder.decode(json.dumps(data).encode())

    # --- writing ---

    def to_new_events(self, pending: Sequence[Any], metadata: dict[str, Any]) -> list[NewEvent]:
        rows: list[NewEvent] = []
        for domain_event in pending:
            stored = self.mapper.to_stored_event(domain_event)
            originator = stored.originator_id
            if not isinstance(originator, uuid.UUID):
                originator = uuid.UUID(str(originator))
            rows.append(
                NewEvent(
                    type=stored.topic,
                    data=JsonText(stored.state.decode()),
                    metadata=metadata,
                    # The same decision always gives the same ids: a re-decided batch never
                    # stores an event twice.
                    event_id=uuid.uuid5(originator, str(stored.originator_version)),
                )
            )
        return rows

    def snapshot(self, saga: Saga) -> tuple[str, JsonText]:
        """The topic and state of a snapshot of ``saga``."""
        stored = self.mapper.to_stored_event(Snapshot.take(saga))
        return stored.topic, JsonText(stored.state.decode())
