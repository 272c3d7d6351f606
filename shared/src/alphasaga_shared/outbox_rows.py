"""An outbox row: what is appended for a message to send (``outbox_events``), and the
stream entry read back from it (``wire_fields``). Apart from the relay (``outbox.py``), so
that whoever only records a message (``alphasaga submit``, the api) loads none of the
relay's metrics, tracing and retries."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from alphasaga_contracts.envelope import (
    BODY,
    CAUSATION_ID,
    CORRELATION_ID,
    MESSAGE_ID,
    SCHEMA,
    TRACEPARENT,
    TYPE,
)

from .eventstore import JsonText, NewEvent, RecordedEvent

if TYPE_CHECKING:
    from .wire import Outgoing


def outbox_events(outgoing: Sequence[Outgoing]) -> list[NewEvent]:
    """Rows to append for ``outgoing``; the message id doubles as the event id, so the
    same message can never be put in the outbox twice."""
    events: list[NewEvent] = []
    for out in outgoing:
        env = out.envelope
        events.append(
            NewEvent(
                type=env.type,
                data=JsonText(env.message.model_dump_json()),
                metadata={
                    "stream": out.stream,
                    MESSAGE_ID: env.message_id,
                    CORRELATION_ID: env.correlation_id,
                    CAUSATION_ID: env.causation_id,
                    TRACEPARENT: env.traceparent,
                    SCHEMA: str(env.message.SCHEMA_VERSION),
                },
                event_id=_event_id(env.message_id),
            )
        )
    return events


def _event_id(message_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(message_id)
    except ValueError:  # a message id that is not a UUID gets a row id of its own
        return uuid.uuid4()


def wire_fields(row: RecordedEvent | NewEvent) -> tuple[str, dict[str, str]]:
    """The stream and entry fields for an outbox row, read back or about to be written."""
    meta = row.metadata
    return meta["stream"], {
        MESSAGE_ID: meta[MESSAGE_ID],
        CORRELATION_ID: meta[CORRELATION_ID],
        CAUSATION_ID: meta.get(CAUSATION_ID, ""),
        TYPE: row.type,
        SCHEMA: meta.get(SCHEMA, "1"),
        TRACEPARENT: meta.get(TRACEPARENT, ""),
        BODY: row.data if isinstance(row.data, str) else json.dumps(row.data, separators=(",", ":")),
    }
