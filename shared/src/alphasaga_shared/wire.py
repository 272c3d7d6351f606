"""The wire format: a stream entry is flat ASCII header fields plus ``body`` (JSON).

See docs/wire-format.md. Decoding is strict: a missing header, a non-ASCII header
value, an unknown type or a body that fails its contract raises ``MalformedMessage``,
and the bus dead-letters the entry at once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from alphasaga_contracts import Message, UnknownMessageType, message_class
from alphasaga_contracts.envelope import (
    BODY,
    CAUSATION_ID,
    CORRELATION_ID,
    HEADER_FIELDS,
    MESSAGE_ID,
    SCHEMA,
    TRACEPARENT,
    TYPE,
)

# Part of the wire contract, so defined with the headers; the runtime's callers find it here.
from alphasaga_contracts.envelope import derived_message_id as derived_message_id

REQUIRED = (MESSAGE_ID, TYPE, BODY)


class MalformedMessage(ValueError):
    """The entry cannot be turned into a contract message; never retried."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """A contract message with its headers, as it travels."""

    message: Message
    message_id: str
    correlation_id: str
    causation_id: str = ""
    traceparent: str = ""

    @property
    def type(self) -> str:
        return self.message.TYPE


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to publish on ``stream``."""

    stream: str
    envelope: Envelope


@dataclass(slots=True)
class Delivery:
    """One stream entry as a consumer received it."""

    stream: str
    entry_id: str
    fields: dict[str, str]
    delivery_count: int = 1
    envelope: Envelope | None = None
    error: str | None = field(default=None)


def new_message_id() -> str:
    return str(uuid.uuid4())


def envelope_for(
    message: Message,
    *,
    correlation_id: str,
    causation_id: str = "",
    message_id: str | None = None,
    traceparent: str = "",
) -> Envelope:
    return Envelope(
        message=message,
        message_id=message_id or new_message_id(),
        correlation_id=correlation_id,
        causation_id=causation_id,
        traceparent=traceparent,
    )


def encode(envelope: Envelope) -> dict[str, str]:
    """Stream entry fields for ``envelope``. Header values are ASCII by construction."""
    fields = {
        MESSAGE_ID: envelope.message_id,
        CORRELATION_ID: envelope.correlation_id,
        CAUSATION_ID: envelope.causation_id,
        TYPE: envelope.message.TYPE,
        SCHEMA: str(envelope.message.SCHEMA_VERSION),
        TRACEPARENT: envelope.traceparent,
        # JSON in UTF-8: any text may be in the body (an error message, a file name).
        BODY: envelope.message.model_dump_json(),
    }
    for name in HEADER_FIELDS:
        if not fields[name].isascii():
            raise MalformedMessage(f"header {name} is not ASCII: {fields[name]!r}")
    return fields


def entry_size(fields: dict[str, str]) -> int:
    """The bytes an entry's names and values take (what the size limit counts)."""
    # isascii() reads a flag: most entries are ASCII and need no encoded copy to be measured.
    return sum(
        (len(k) if k.isascii() else len(k.encode())) + (len(v) if v.isascii() else len(v.encode()))
        for k, v in fields.items()
    )


def cap_text(text: str, limit: int, what: str) -> str:
    """``text`` cut to ``limit`` characters, saying what was cut and how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({what} of {len(text):,} characters cut to {limit:,})"


def decode(fields: dict[str, str]) -> Envelope:
    """Validate an entry's fields against the wire format and the message's contract."""
    missing = [name for name in REQUIRED if not fields.get(name)]
    if missing:
        raise MalformedMessage(f"missing field(s): {', '.join(missing)}")
    for name in (MESSAGE_ID, CORRELATION_ID, CAUSATION_ID, TYPE, SCHEMA, TRACEPARENT):
        value = fields.get(name, "")
        if not value.isascii() or "\ufffd" in value:
            raise MalformedMessage(f"header {name} is not ASCII")
    try:
        cls = message_class(fields[TYPE])
    except UnknownMessageType as exc:
        raise MalformedMessage(str(exc)) from None
    schema = fields.get(SCHEMA) or str(cls.SCHEMA_VERSION)
    if schema != str(cls.SCHEMA_VERSION):
        raise MalformedMessage(
            f"{cls.TYPE} schema version {schema} is not supported (this service speaks v{cls.SCHEMA_VERSION})"
        )
    try:
        message = cls.model_validate_json(fields[BODY])
    except ValidationError as exc:
        raise MalformedMessage(f"{cls.TYPE} body violates its contract: {_summarise(exc)}") from None
    return Envelope(
        message=message,
        message_id=fields[MESSAGE_ID],
        # A producer may omit the correlation id: the message starts its own conversation.
        correlation_id=fields.get(CORRELATION_ID) or fields[MESSAGE_ID],
        causation_id=fields.get(CAUSATION_ID, ""),
        traceparent=fields.get(TRACEPARENT, ""),
    )


def _summarise(exc: ValidationError) -> str:
    parts: list[str] = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def describe(fields: dict[str, Any]) -> str:
    return f"{fields.get(TYPE, '?')} {fields.get(MESSAGE_ID, '?')}"
