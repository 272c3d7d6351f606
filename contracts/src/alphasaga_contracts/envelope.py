"""The message base class, the type registry and the header names of the wire format.

A message on a stream is a flat set of ASCII fields (see docs/wire-format.md): the
headers below plus ``body``, the contract model as JSON. Keeping the format flat means
any producer (redis-cli, another language) can publish without a client library.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from .text import STRICT

# Header field names, in the order they are written.
MESSAGE_ID = "message_id"
CORRELATION_ID = "correlation_id"
CAUSATION_ID = "causation_id"
TYPE = "type"
SCHEMA = "schema"
TRACEPARENT = "traceparent"
BODY = "body"
HEADER_FIELDS = (MESSAGE_ID, CORRELATION_ID, CAUSATION_ID, TYPE, SCHEMA, TRACEPARENT)

_REGISTRY: dict[str, type[Message]] = {}
# Former type names that still decode, each to a class built on first use.
_ALIASES: dict[str, Callable[[], type[Message]]] = {}


def derived_message_id(cause: str, *parts: str) -> str:
    """A stable id for a message caused by ``cause``: redoing the work yields the same id,
    so the receiver's inbox can recognise the duplicate.

    The text of ``uuid.uuid5(NAMESPACE_URL, "cause/part/...")``, built without the
    ``UUID`` object (on the orchestrator's hot path; docs/decisions/0008)."""
    raw = bytearray(hashlib.sha1(_URL_NAMESPACE + "/".join((cause, *parts)).encode()).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_URL_NAMESPACE = uuid.NAMESPACE_URL.bytes


class Message(BaseModel):
    """A command or event. Subclasses set ``TYPE`` (``<owner>.<Name>``) and bump
    ``SCHEMA_VERSION`` on a breaking change."""

    model_config = ConfigDict(extra="forbid", frozen=True, **STRICT)

    TYPE: ClassVar[str] = ""
    SCHEMA_VERSION: ClassVar[int] = 1
    # Set on the class of a former type name: the type it reads as (``register_alias``).
    ALIAS_OF: ClassVar[str] = ""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if not cls.TYPE or cls.ALIAS_OF:
            return  # an abstract base such as StepCommand, or a former name
        known = _REGISTRY.get(cls.TYPE)
        if known is not None and known is not cls:
            raise TypeError(f"message type {cls.TYPE!r} is defined twice")
        _REGISTRY[cls.TYPE] = cls


class UnknownMessageType(LookupError):
    pass


# The modules that define messages: every one is registered once they are imported.
_MESSAGE_MODULES = ("alphasaga_contracts.saga", "alphasaga_contracts.steps")


def _load_messages() -> None:
    for module in _MESSAGE_MODULES:
        importlib.import_module(module)


def register_alias(type_name: str, build: Callable[[], type[Message]]) -> None:
    """Keep a former type name decodable: ``build`` makes its class (with ``ALIAS_OF`` set)
    the first time an entry of that type is met."""
    _ALIASES[type_name] = build


def message_class(type_name: str) -> type[Message]:
    """The contract model for a wire ``type`` header (a former name's too)."""
    cls = _REGISTRY.get(type_name)
    if cls is None:
        _load_messages()
        cls = _REGISTRY.get(type_name) or _alias(type_name)
    if cls is None:
        raise UnknownMessageType(f"unknown message type {type_name!r}")
    return cls


@functools.cache
def _alias(type_name: str) -> type[Message] | None:
    build = _ALIASES.get(type_name)
    return None if build is None else build()


def registered_types() -> dict[str, type[Message]]:
    """Every current type; former names are left out (``alias_types``)."""
    _load_messages()
    return dict(sorted(_REGISTRY.items()))


def alias_types() -> dict[str, str]:
    """Former type name -> the type it reads as."""
    _load_messages()
    return {name: message_class(name).ALIAS_OF for name in sorted(_ALIASES)}
