"""A service whose stop is held open until the test lets go: a background job that,
once cancelled by SIGTERM, waits for the file named by HELD_STOP_RELEASE (at most the
runner's stop deadline). It lets a test probe the service while it is stopping."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from alphasaga_shared.runner import ServiceContext, run_service


async def setup(ctx: ServiceContext) -> None:
    release = Path(os.environ["HELD_STOP_RELEASE"])

    async def hold() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            print("held-stop: stopping, held", file=sys.stderr, flush=True)
            while not release.exists():
                await asyncio.sleep(0.02)
            raise

    ctx.background.append(hold)


if __name__ == "__main__":
    run_service("heldstop", setup)
