"""AlphaSaga contracts: every message between services, and the stream names.

This package is the only thing services share about each other. Stream names and saga
states load at once; the message models (pydantic) load on first use, so that a command
line that only names a stream or a state starts quickly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .states import SagaState, SubmissionState
from .streams import DEFAULT_NAMESPACE, WORKERS, Service, Streams

if TYPE_CHECKING:
    from . import research, saga, steps
    from .envelope import Message, UnknownMessageType, message_class, registered_types

__all__ = [
    "DEFAULT_NAMESPACE",
    "WORKERS",
    "Message",
    "SagaState",
    "Service",
    "Streams",
    "SubmissionState",
    "UnknownMessageType",
    "message_class",
    "registered_types",
    "research",
    "saga",
    "steps",
]

_MODULES = ("research", "saga", "steps")
_FROM_ENVELOPE = ("Message", "UnknownMessageType", "message_class", "registered_types")


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _FROM_ENVELOPE:
        return getattr(importlib.import_module(".envelope", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
