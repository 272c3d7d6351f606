"""An outbox row: what is appended for a message to send (``outbox_events``), the stream
entry read back from it (``wire_fields``), and the NOTIFY payloads that carry a commit's
rows to the relay (``notice``, ``read_notice``). Apart from the relay (``outbox.py``), so
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


# PostgreSQL refuses a NOTIFY payload of 8,000 bytes or more.
NOTICE_MAX_BYTES = 7_900


def notice(rows: Sequence[NewEvent]) -> str:
    """The payload of the NOTIFY that a commit of outbox ``rows`` sends: the rows as their
    stream entries when they all fit in one, so that the relay holding the lock publishes
    them without reading them back (docs/decisions/0030); else empty, which wakes the
    relay's tail to read them. A larger batch is read in one pass of the tail, which costs
    less than carrying it in many payloads (and the commit's latency counts when one saga
    is in flight, whose commit is small): encoding stops at the first row past the limit."""
    items: list[str] = []
    size = 1  # "[" + each item and its "," or "]": ASCII (json.dumps escapes the rest), so chars are bytes
    for row in rows:
        item = json.dumps([str(row.event_id), *wire_fields(row)], separators=(",", ":"))
        size += len(item) + 1
        if size > NOTICE_MAX_BYTES:
            return ""
        items.append(item)
    return "[" + ",".join(items) + "]" if items else ""


def read_notice(payload: str) -> list[tuple[uuid.UUID, str, dict[str, str]]]:
    """The rows a NOTIFY payload of ``notice`` carries: (event id, stream, entry fields).
    Raises ``ValueError`` for anything else."""
    items = json.loads(payload)
    if not isinstance(items, list):
        raise ValueError("an outbox notice is a JSON list")
    rows: list[tuple[uuid.UUID, str, dict[str, str]]] = []
    for item in items:
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[1], str) and isinstance(item[2], dict)):
            raise ValueError("an outbox notice's row is [event id, stream, fields]")
        fields = item[2]
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items()):
            raise ValueError("an outbox notice's fields are text")
        rows.append((uuid.UUID(str(item[0])), item[1], fields))
    return rows
