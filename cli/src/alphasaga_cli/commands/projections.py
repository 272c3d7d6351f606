"""``alphasaga projections``: the read models derived from the log."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from ..output import echo, print_json
from ..session import with_client

if TYPE_CHECKING:
    from alphasaga_client import AlphaSaga

app = typer.Typer(
    no_args_is_help=True, suggest_commands=False, rich_markup_mode=None, help="Read models derived from the event log."
)


@app.command()
def rebuild(as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """Rebuild saga_summaries from the event log.

    Empties the table that status and list read and folds the whole log into it again.
    Safe while the services run.

    Example: alphasaga projections rebuild
    """

    async def go(client: AlphaSaga) -> int:
        return await client.rebuild_saga_list()

    started = time.monotonic()
    sagas = with_client(go)
    took = time.monotonic() - started
    if as_json:
        print_json({"projection": "saga_summaries", "sagas": sagas, "seconds": round(took, 3)})
    else:
        echo(f"saga_summaries rebuilt from the log: {sagas} sagas in {took:.1f}s")
