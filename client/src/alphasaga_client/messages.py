"""Contract messages on streams: publishing one with correct headers after validating it
exactly as a consumer will, and decoding entries for ``tail``."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from alphasaga_contracts import Message, Streams, UnknownMessageType, message_class
from alphasaga_contracts import saga as sg
from alphasaga_contracts import steps as st
from alphasaga_contracts.envelope import BODY, CAUSATION_ID, CORRELATION_ID, HEADER_FIELDS, MESSAGE_ID, SCHEMA, TYPE
from alphasaga_shared.errors import InvalidRequest
from alphasaga_shared.wire import Envelope, MalformedMessage, decode, encode

_SHORT_KINDS = ("cmd:", "evt:")


def resolve_stream(name: str, streams: Streams) -> str:
    """``cmd:reasoning`` and ``evt:sagas`` get the namespace; other names are taken as given."""
    if name.startswith(_SHORT_KINDS):
        return f"{streams.namespace}:{name}"
    return name


def home_streams(cls: type[Message], streams: Streams) -> set[str]:
    """Where a message of this type belongs (and those streams' express lanes): a kind's
    command on its kind's stream, its result on its service's; a generic step message
    (``steps.CompensateStep``, ``steps.StepFailed``…) on any worker's."""
    homes = _homes(cls, streams)
    return homes | {f"{home}:express" for home in homes}


def _homes(cls: type[Message], streams: Streams) -> set[str]:
    owner = cls.TYPE.split(".", 1)[0]
    if issubclass(cls, sg.SagaEvent):
        return {streams.sagas}
    if owner == "orchestrator":
        return {streams.commands(owner)}
    kind = st.KINDS.of_command(cls) or st.KINDS.of_result(cls)
    if kind is not None:
        return {streams.commands(kind.queue) if issubclass(cls, st.StepCommand) else streams.events(kind.service)}
    if issubclass(cls, st.CompensateStep):
        return {streams.commands(queue) for queue in st.KINDS.queues()}
    return {streams.events(service) for service in st.KINDS.services()}


def parse_body(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not JSON: {exc}") from None


def build_envelope(
    type_name: str,
    body: Any,
    *,
    message_id: str | None = None,
    correlation_id: str | None = None,
    causation_id: str = "",
) -> Envelope:
    """Validate ``body`` against its contract the way consumers do (``wire.decode``), so a
    message this accepts is one they accept."""
    try:
        cls = message_class(type_name)
    except UnknownMessageType:
        raise InvalidRequest(f"unknown message type {type_name!r} (see `alphasaga types`)") from None
    message_id = message_id or str(uuid.uuid4())
    if correlation_id is None:
        saga_id = body.get("saga_id") if isinstance(body, dict) else None
        correlation_id = str(saga_id) if saga_id else message_id
    fields = {
        MESSAGE_ID: message_id,
        CORRELATION_ID: correlation_id,
        CAUSATION_ID: causation_id,
        TYPE: cls.TYPE,
        SCHEMA: str(cls.SCHEMA_VERSION),
        BODY: json.dumps(body),
    }
    try:
        return decode(fields)
    except MalformedMessage as exc:
        raise InvalidRequest(f"refused, nothing published: {exc}") from None


def publish_fields(envelope: Envelope) -> dict[str, str]:
    try:
        return encode(envelope)
    except MalformedMessage as exc:
        raise InvalidRequest(f"refused, nothing published: {exc}") from None


@dataclass(frozen=True, slots=True)
class Entry:
    """A stream entry as ``tail`` shows it: headers, body and whether it is a valid message."""

    stream: str
    entry_id: str
    fields: dict[str, str]
    error: str | None

    @property
    def headers(self) -> dict[str, str]:
        return {k: v for k, v in self.fields.items() if k != BODY}

    @property
    def body(self) -> Any:
        raw = self.fields.get(BODY)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw

    def as_json(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "entry_id": self.entry_id,
            "headers": self.headers,
            "body": self.body,
            "valid": self.error is None,
            "error": self.error,
        }

    def line(self) -> str:
        h = self.fields
        head = f"{self.entry_id} {self.stream} {h.get(TYPE, '?')} id={h.get(MESSAGE_ID, '?')}"
        if h.get(CORRELATION_ID) and h.get(CORRELATION_ID) != h.get(MESSAGE_ID):
            head += f" corr={h[CORRELATION_ID]}"
        if h.get(CAUSATION_ID):
            head += f" cause={h[CAUSATION_ID]}"
        extra = {k: v for k, v in h.items() if k not in (*HEADER_FIELDS, BODY) and v}
        if extra:
            head += " " + " ".join(f"{k}={v}" for k, v in extra.items())
        body = h.get(BODY, "")
        lines = [head, f"    {body}"]
        if self.error:
            lines.append(f"    invalid: {self.error}")
        return "\n".join(lines)


def decode_entry(stream: str, entry_id: str, fields: dict[str, str]) -> Entry:
    """Dead letters carry ``dlq_*`` fields besides the message's own; they do not make
    the message invalid."""
    try:
        decode({k: v for k, v in fields.items() if not k.startswith("dlq_")})
    except MalformedMessage as exc:
        return Entry(stream, entry_id, fields, str(exc))
    return Entry(stream, entry_id, fields, None)
