"""The tail of every test worker process: start the bus, say ready, serve until SIGTERM."""

from __future__ import annotations

import asyncio
import signal

from alphasaga_shared.bus import Bus


async def serve_until_sigterm(bus: Bus, ready_line: str) -> None:
    await bus.start()
    print(ready_line, flush=True)  # what the tests wait for in the process's output
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await bus.stop()
