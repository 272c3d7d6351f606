"""The DBOS side of the peer workload, in a process of its own so that its CPU can be
told apart from the bench's: ``python -m bench.peers.dbos_app SYSTEM_DATABASE_URL``.

DBOS Transact is a library, so submitting and awaiting a workflow happens in this
process too, and the timings are taken here. The parent (``bench.peers.dbos``) sends
one JSON command a line on stdin; every reply is one JSON line on stdout after
``DBOS_REPLY`` (whatever DBOS itself prints is never mistaken for one):

- ``{"cmd": "burst", "n": 1000}`` -> ``{"seconds": ...}``, first submit to last completion
- ``{"cmd": "one", "n": 100, "warmup": 5}`` -> ``{"ms": [...]}``, each submit to its result
- ``{"cmd": "stop"}`` or end of input: DBOS shuts down and the process exits
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from dbos import DBOS, DBOSConfig

from bench.peers import DBOS_REPLY


@DBOS.step()
async def noop() -> None:
    return None


@DBOS.workflow()
async def flow(n: int) -> int:
    # Four steps, as many as a research saga has: DBOS checkpoints each one's outcome
    # in its system database before the next starts.
    for _ in range(4):
        await noop()
    return n


async def _one(n: int) -> None:
    handle = await DBOS.start_workflow_async(flow, n)
    if await handle.get_result() != n:
        raise RuntimeError("a workflow returned something else than its input")


async def burst(n: int) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(_one(i) for i in range(n)))
    return time.perf_counter() - started


async def one_in_flight(n: int, warmup: int) -> list[float]:
    latencies: list[float] = []
    for i in range(warmup + n):
        started = time.perf_counter()
        await _one(i)
        if i >= warmup:
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def _reply(payload: dict[str, Any]) -> None:
    sys.stdout.write(DBOS_REPLY + json.dumps(payload) + "\n")
    sys.stdout.flush()


async def main(url: str) -> None:
    config: DBOSConfig = {"name": "alphasaga-bench", "system_database_url": url, "log_level": "WARNING"}
    DBOS(config=config)
    DBOS.launch()
    try:
        await _one(-1)  # schema made, pool and executor warm
        _reply({"ready": True})
        while line := await asyncio.to_thread(sys.stdin.readline):
            command = json.loads(line)
            if command["cmd"] == "burst":
                _reply({"seconds": await burst(int(command["n"]))})
            elif command["cmd"] == "one":
                _reply({"ms": await one_in_flight(int(command["n"]), int(command.get("warmup", 5)))})
            elif command["cmd"] == "stop":
                break
            else:
                _reply({"error": f"unknown command {command['cmd']!r}"})
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
