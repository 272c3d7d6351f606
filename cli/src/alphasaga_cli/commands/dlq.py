"""``alphasaga dlq``: inspect, redrive and purge dead letters."""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import NOT_COMPLETED, CliError
from ..output import confirm, echo, print_json, table
from ..session import with_client
from ..timefmt import iso

if TYPE_CHECKING:
    from alphasaga_client import AlphaSaga, DeadLetter

app = typer.Typer(
    no_args_is_help=True,
    suggest_commands=False,
    rich_markup_mode=None,
    help="Dead letters: messages the services could not process.",
)

StreamOpt = Annotated[
    str | None, typer.Option("--stream", "-s", help="Only this dead-letter stream (or its source, e.g. cmd:ml)")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]
IdsArg = Annotated[list[str] | None, typer.Argument(help="Dead-letter entry ids", show_default=False)]


async def _select(client: AlphaSaga, stream: str | None, ids: list[str] | None, every: bool) -> list[DeadLetter]:
    if bool(ids) == every:
        raise CliError("give dead-letter entry ids, or --all")
    if every:
        return await client.dead_letters(stream)
    return [await client.dead_letter(entry_id, stream) for entry_id in ids or []]


@app.command("list")
def list_(stream: StreamOpt = None, as_json: JsonFlag = False) -> None:
    """List dead letters with their error and delivery count.

    Example: alphasaga dlq list --stream cmd:ml
    """

    async def go(client: AlphaSaga) -> list[DeadLetter]:
        return await client.dead_letters(stream)

    letters = with_client(go)
    if as_json:
        print_json([letter.as_json() for letter in letters])
        return
    if not letters:
        echo("no dead letters", err=True)
        return
    table(
        ["dlq stream", "entry id", "type", "message id", "deliveries", "at", "error"],
        [
            [
                d.dlq_stream,
                d.entry_id,
                d.fields.get("type", "?"),
                d.fields.get("message_id", "?"),
                str(d.delivery_count),
                iso(d.at) if d.at else "",
                d.error if len(d.error) <= 120 else d.error[:119] + "…",
            ]
            for d in letters
        ],
    )


@app.command()
def show(
    entry_id: Annotated[str, typer.Argument(help="Dead-letter entry id")],
    stream: StreamOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Show one dead letter in full: headers, body, error, origin.

    Example: alphasaga dlq show 1714556400000-0
    """

    async def go(client: AlphaSaga) -> DeadLetter:
        return await client.dead_letter(entry_id, stream)

    letter = with_client(go)
    if as_json:
        print_json(letter.as_json())
        return
    info = letter.as_json()
    for key in ("dlq_stream", "entry_id", "source_stream", "source_id", "group", "consumer", "dead_lettered_at"):
        echo(f"{key}: {info[key]}")
    echo(f"delivery_count: {letter.delivery_count}")
    echo(f"error: {letter.error}")
    for key, value in letter.original.items():
        if key == "body":
            with contextlib.suppress(json.JSONDecodeError):
                value = json.dumps(json.loads(value), indent=2, ensure_ascii=False)
        echo(f"{key}: {value}")


@app.command()
def redrive(
    ids: IdsArg = None,
    every: Annotated[bool, typer.Option("--all", help="Every dead letter (of --stream, if given)")] = False,
    stream: StreamOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Send dead letters back to their source stream.

    Unchanged (same message id), and removed from the dead-letter stream in the same
    transaction. Fix the cause first.

    Example: alphasaga dlq redrive 1714556400000-0

    Example: alphasaga dlq redrive --all --stream cmd:ml
    """

    async def go(client: AlphaSaga) -> list[dict[str, str]]:
        done: list[dict[str, str]] = []
        for letter in await _select(client, stream, ids, every):
            new_id = await client.redrive(letter)
            done.append(
                {
                    "dlq_stream": letter.dlq_stream,
                    "entry_id": letter.entry_id,
                    "type": letter.fields.get("type", "?"),
                    "message_id": letter.fields.get("message_id", "?"),
                    "stream": letter.source_stream,
                    "new_entry_id": new_id,
                }
            )
        return done

    done = with_client(go)
    if as_json:
        print_json(done)
        return
    for d in done:
        echo(f"redriven {d['entry_id']} ({d['type']} {d['message_id']}) to {d['stream']} as {d['new_entry_id']}")
    if not done:
        echo("no dead letters to redrive", err=True)


@app.command()
def purge(
    ids: IdsArg = None,
    every: Annotated[bool, typer.Option("--all", help="Every dead letter (of --stream, if given)")] = False,
    stream: StreamOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
) -> None:
    """Delete dead letters for good, after asking.

    Only the letters counted in the question are deleted, never one that arrives meanwhile.

    Example: alphasaga dlq purge --all --stream cmd:orchestrator
    """

    async def go(client: AlphaSaga) -> int:
        letters = await _select(client, stream, ids, every)
        if not letters:
            echo("no dead letters to purge", err=True)
            return 0
        streams = sorted({d.dlq_stream for d in letters})
        question = f"Delete {len(letters)} dead letter(s) from {', '.join(streams)}? This cannot be undone."
        if not yes and not confirm(question):
            raise CliError("nothing purged", NOT_COMPLETED)
        return await client.purge(letters)

    removed = with_client(go)
    echo(f"purged {removed} dead letter(s)")
