"""``alphasaga projections``: the read models derived from the log."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import typer

from alphasaga_orchestrator.projection import SagaProjector

from ..connect import event_store, load_settings
from ..output import echo, print_json

app = typer.Typer(no_args_is_help=True, rich_markup_mode="markdown", help="Read models derived from the event log.")


@app.command()
def rebuild(as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """Rebuild saga_summaries from the event log.

    Empties the table that status and list read and folds the whole log into it again.
    Safe while the services run.

    Example: alphasaga projections rebuild
    """
    settings = load_settings()

    async def go() -> int:
        async with event_store(settings) as store:
            return await SagaProjector(store).rebuild()

    started = time.monotonic()
    sagas = asyncio.run(go())
    took = time.monotonic() - started
    if as_json:
        print_json({"projection": "saga_summaries", "sagas": sagas, "seconds": round(took, 3)})
    else:
        echo(f"saga_summaries rebuilt from the log: {sagas} sagas in {took:.1f}s")
