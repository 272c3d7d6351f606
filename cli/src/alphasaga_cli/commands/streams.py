"""What an operator does on the wire: ``publish`` a contract message, ``tail`` streams."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import CliError
from ..output import echo, print_json
from ..requests import read_document
from ..session import settings, with_client

if TYPE_CHECKING:
    from alphasaga_client import AlphaSaga

StreamArg = Annotated[
    str, typer.Argument(help="Stream: full name, or cmd:SERVICE or evt:SERVICE in ALPHASAGA_NAMESPACE")
]


def read_data(data: str) -> Any:
    """``--data`` is JSON, ``@file`` (JSON or YAML) or ``-`` (JSON on stdin)."""
    from alphasaga_client.messages import parse_body

    if data.startswith("@"):
        return read_document(Path(data[1:]))
    if data == "-":
        return read_document(Path("-"))
    return parse_body(data)


def check_type(type_name: str) -> None:
    from alphasaga_contracts import UnknownMessageType, message_class, registered_types

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
    from alphasaga_client.messages import build_envelope, home_streams, publish_fields, resolve_stream

    check_type(type_)
    config = settings()
    target = resolve_stream(stream, config.streams)
    envelope = build_envelope(
        type_, read_data(data), message_id=message_id, correlation_id=correlation_id, causation_id=causation_id
    )
    homes = home_streams(type(envelope.message), config.streams)
    if target not in homes and not force:
        raise CliError(
            f"{envelope.type} belongs on {min(homes, key=len)}, not {target}; nothing published (--force to insist)"
        )
    fields = publish_fields(envelope)

    async def go(client: AlphaSaga) -> str:
        return await client.publish(target, envelope)

    entry_id = with_client(go, config)
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

    async def go(client: AlphaSaga) -> None:
        cursors = await client.cursors(streams, from_)
        echo(f"following {', '.join(cursors)} (Ctrl-C to stop)", err=True)
        seen = 0
        async for entry in client.tail(cursors):
            if as_json:
                print_json(entry.as_json())
            else:
                echo(entry.line())
            seen += 1
            if count is not None and seen >= count:
                return

    with_client(go)


def types(as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """List the contract message types that publish accepts.

    With --json, each type's JSON Schema.

    Example: alphasaga types
    """
    from alphasaga_contracts import registered_types

    registry = registered_types()
    if as_json:
        print_json({name: cls.model_json_schema() for name, cls in registry.items()})
        return
    for name, cls in registry.items():
        fields = ", ".join(f for f in cls.model_fields)
        echo(f"{name} v{cls.SCHEMA_VERSION}: {fields}")
