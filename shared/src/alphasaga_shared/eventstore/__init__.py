from .store import (
    ANY_VERSION,
    START,
    ConcurrencyError,
    Conn,
    EventStore,
    JsonText,
    NewEvent,
    Position,
    RecordedEvent,
)

__all__ = [
    "ANY_VERSION",
    "START",
    "ConcurrencyError",
    "Conn",
    "EventStore",
    "JsonText",
    "NewEvent",
    "Position",
    "RecordedEvent",
]
