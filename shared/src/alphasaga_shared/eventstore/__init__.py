"""PostgreSQL storage of the runtime: the event log (with the outbox and reader
positions), artifacts, and the numbered migrations of every table."""

from .artifacts import ArtifactLink, ArtifactNotFound, ArtifactStore, StepUndone
from .store import (
    OUTBOX_PREFIX,
    START,
    ConcurrencyError,
    Conn,
    EventStore,
    JsonText,
    NewEvent,
    OutboxRef,
    Position,
    RecordedEvent,
    outbox_channel,
    outbox_stream,
)

__all__ = [
    "OUTBOX_PREFIX",
    "START",
    "ArtifactLink",
    "ArtifactNotFound",
    "ArtifactStore",
    "ConcurrencyError",
    "Conn",
    "EventStore",
    "JsonText",
    "NewEvent",
    "OutboxRef",
    "Position",
    "RecordedEvent",
    "StepUndone",
    "outbox_channel",
    "outbox_stream",
]
