"""PostgreSQL storage of the runtime: the event log (with the outbox and reader
positions), artifacts, and the numbered migrations of every table. The artifact store
(and the contract models it returns) loads on first use."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .store import (
    OUTBOX_PREFIX,
    START,
    Checkpoint,
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

if TYPE_CHECKING:
    from .artifacts import ArtifactLink, ArtifactNotFound, ArtifactStore, StepUndone

__all__ = [
    "OUTBOX_PREFIX",
    "START",
    "ArtifactLink",
    "ArtifactNotFound",
    "ArtifactStore",
    "Checkpoint",
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


def __getattr__(name: str) -> Any:
    if name in ("ArtifactLink", "ArtifactNotFound", "ArtifactStore", "StepUndone"):
        return getattr(importlib.import_module(".artifacts", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
