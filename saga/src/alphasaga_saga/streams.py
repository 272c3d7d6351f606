"""Saga stream ids: a saga's events are the stream ``saga-<id>`` (its outgoing messages
are ``outbox:<id>``, named by the event store's ``outbox_stream``)."""

from __future__ import annotations

import uuid

SAGA_PREFIX = "saga-"


def saga_stream(saga_id: uuid.UUID) -> str:
    return f"{SAGA_PREFIX}{saga_id}"


def saga_id_of_stream(stream_id: str) -> uuid.UUID | None:
    """The saga a stream id names, or None for any other stream."""
    if not stream_id.startswith(SAGA_PREFIX):
        return None
    try:
        return uuid.UUID(stream_id.removeprefix(SAGA_PREFIX))
    except ValueError:
        return None
