"""AlphaSaga contracts: every message between services, and the stream names.

This package is the only thing services share about each other. Stream names and saga
states load at once; the message models (pydantic), and with them the services and step
kinds (``steps.Service``, ``steps.KINDS``), load on first use, so that a command line that
only names a stream or a state starts quickly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .states import SagaState, SubmissionState
from .streams import DEFAULT_NAMESPACE, Priority, Streams

if TYPE_CHECKING:
    from . import research, saga, steps
    from .envelope import Message, UnknownMessageType, message_class, registered_types
    from .steps import KINDS, Service

    WORKERS: tuple[Service, ...]

__all__ = [
    "DEFAULT_NAMESPACE",
    "KINDS",
    "WORKERS",
    "Message",
    "Priority",
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
_FROM_STEPS = ("KINDS", "Service")


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _FROM_ENVELOPE:
        return getattr(importlib.import_module(".envelope", __name__), name)
    if name in _FROM_STEPS:
        return getattr(importlib.import_module(".steps", __name__), name)
    if name == "WORKERS":  # the services hosting step kinds, from the registry as it is now
        return importlib.import_module(".steps", __name__).KINDS.services()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
