from .store import (
    ANY_VERSION,
    START,
    ConcurrencyError,
    Conn,
    EventStore,
    NewEvent,
    Position,
    RecordedEvent,
)

__all__ = ["ANY_VERSION", "START", "ConcurrencyError", "Conn", "EventStore", "NewEvent", "Position", "RecordedEvent"]
