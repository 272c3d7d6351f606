"""What an operator does on the wire: ``publish`` a contract message, ``tail`` streams."""

from __future__ import annotations

import asyncio
import difflib
from pathlib import Path
from typing import Annotated, Any

import typer

from alphasaga_contracts import UnknownMessageType, message_class, registered_types
from alphasaga_shared.client import stream_tip
from alphasaga_shared.wire import as_text

from ..connect import load_settings, redis_client
from ..errors import CliError
from ..messages import build_envelope, decode_entry, home_streams, parse_body, publish_fields, resolve_stream
from ..output import echo, print_json
from ..requests import read_document

StreamArg = Annotated[
    str, typer.Argument(help="Stream: full name, or cmd:SERVICE or evt:SERVICE in ALPHASAGA_NAMESPACE")
]


def read_data(data: str) -> Any:
    """``--data`` is JSON, ``@file`` (JSON or YAML) or ``-`` (JSON on stdin)."""
    if data.startswith("@"):
        return read_document(Path(data[1:]))
    if data == "-":
        return read_document(Path("-"))
    return parse_body(data)


def check_type(type_name: str) -> None:
    try:
        message_class(type_name)
    except UnknownMessageType:
        close = difflib.get_close_matches(type_name, list(registered_types()), n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise CliError(f"unknown message type {type_name!r}{hint}") from None


def publish(
    stream: StreamArg,
    type_: Annotated[str, typer.Option("--type", "-t", help="Contract type, e.g. orchestrator.StartResearch")],
    data: Annotated[str, typer.Option("--data", "-d", help="The body: JSON, @file.json|yaml, or - for stdin")],
    message_id: Annotated[str | None, typer.Option(help="Header message_id (default: a new UUID)")] = None,
    correlation_id: Annotated[
        str | None, typer.Option(help="Header correlation_id (default: the body's saga_id, else the message id)")
    ] = None,
    causation_id: Annotated[str, typer.Option(help="Header causation_id")] = "",
    force: Annotated[
        bool, typer.Option("--force", help="Publish even to a stream this type does not belong on")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts")] = False,
) -> None:
    """Publish a contract message, validated, with correct headers.

    The message is validated exactly as consumers validate it: an invalid one is refused
    with the reason and nothing is published.

    Example: alphasaga publish cmd:orchestrator --type orchestrator.CancelSaga
    --data '{"saga_id": "3f1c2a9e-5b7d-4e0a-9c1b-2d3e4f5a6b7c", "reason": "typo"}'
    """
    check_type(type_)
    settings = load_settings()
    target = resolve_stream(stream, settings.streams)
    envelope = build_envelope(
        type_, read_data(data), message_id=message_id, correlation_id=correlation_id, causation_id=causation_id
    )
    homes = home_streams(type(envelope.message), settings.streams)
    if target not in homes and not force:
        raise CliError(
            f"{envelope.type} belongs on {min(homes, key=len)}, not {target}; nothing published (--force to insist)"
        )
    fields = publish_fields(envelope)

    async def go() -> str:
        async with redis_client(settings) as redis:
            entry_id = await redis.xadd(target, fields)  # type: ignore[arg-type]
            return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    entry_id = asyncio.run(go())
    if as_json:
        print_json({"stream": target, "entry_id": entry_id, **{k: v for k, v in fields.items() if k != "body"}})
    else:
        echo(f"published {envelope.type} {envelope.message_id} to {target} as {entry_id}")


def tail(
    streams: Annotated[list[str], typer.Argument(help="One or more streams (cmd:SERVICE, evt:sagas, or full names)")],
    from_: Annotated[
        str, typer.Option("--from", help="$: only new entries; 0: from the beginning; or an entry id")
    ] = "$",
    count: Annotated[int | None, typer.Option(min=1, help="Stop after this many entries")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
) -> None:
    """Follow streams, decoding each entry's headers and body.

    Reads with XREAD, outside any consumer group: it never takes a message from a service.

    Example: alphasaga tail evt:sagas

    Example: alphasaga tail cmd:reasoning evt:reasoning --json
    """
    settings = load_settings()
    names = [resolve_stream(s, settings.streams) for s in streams]

    async def go() -> None:
        async with redis_client(settings) as redis:
            # "$" re-read on every call would miss entries added between two reads:
            # start from the current last id instead.
            cursors = {n: (await stream_tip(redis, n) if from_ == "$" else from_) for n in names}
            echo(f"following {', '.join(names)} (Ctrl-C to stop)", err=True)
            seen = 0
            while True:
                reply: Any = await redis.xread(cursors, count=100, block=1000)  # type: ignore[arg-type]
                for raw_stream, entries in reply:
                    stream = raw_stream.decode()
                    for raw_id, raw in entries:
                        entry_id = raw_id.decode()
                        cursors[stream] = entry_id
                        entry = decode_entry(stream, entry_id, as_text(raw))
                        if as_json:
                            print_json(entry.as_json())
                        else:
                            echo(entry.line())
                        seen += 1
                        if count is not None and seen >= count:
                            return

    asyncio.run(go())


def types(as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """List the contract message types that publish accepts.

    With --json, each type's JSON Schema.

    Example: alphasaga types
    """
    registry = registered_types()
    if as_json:
        print_json({name: cls.model_json_schema() for name, cls in registry.items()})
        return
    for name, cls in registry.items():
        fields = ", ".join(f for f in cls.model_fields)
        echo(f"{name} v{cls.SCHEMA_VERSION}: {fields}")
