"""The express lane (issue #25 §4): workers that answer at once (tests/support/sim_workers.py),
one orchestrator process, real Redis and PostgreSQL.

An express saga's latency end to end (submit to its terminal lifecycle event, as a client
sees it) on an idle system, and while a burst of normal sagas is queued: each round
submits the burst, then runs express sagas one after another until the burst has drained,
keeping only those that ended while normal sagas were still outstanding. A normal saga
submitted right behind the burst is the reference: what an express saga would wait
without its lane. Target: the loaded p95 at most twice the idle p95.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from alphasaga_client import AlphaSaga
from alphasaga_contracts import Priority
from alphasaga_contracts import saga as sg
from alphasaga_contracts.envelope import CORRELATION_ID, TYPE
from alphasaga_contracts.research import ResearchRequest

from .common import Servers, percentile
from .saga import BURST_TIMEOUT_S, Stack

ROUNDS = 3
BACKLOG = 500
IDLE_SAGAS = 60
WARM_UP = 5
_TERMINAL = {t.TYPE.encode() for t in (sg.SagaCompleted, sg.SagaRolledBack, sg.SagaCompensationFailed)}
REQUEST = ResearchRequest(dataset="sp500")


async def _one(client: AlphaSaga, priority: Priority) -> float:
    """Milliseconds from submitting one saga to its terminal lifecycle event."""
    started = time.perf_counter()
    submitted = await client.submit(REQUEST, priority=priority)
    async for _ in client.follow(submitted.saga_id, after=submitted.follow_from, timeout_s=BURST_TIMEOUT_S):
        pass
    return (time.perf_counter() - started) * 1000


class Drain:
    """Counts the terminal lifecycle events of a set of sagas, read from the sagas stream."""

    def __init__(self, client: AlphaSaga, sagas: set[uuid.UUID], cursor: bytes) -> None:
        self.client, self.cursor = client, cursor
        self.waiting = {str(s).encode() for s in sagas}
        self.ended_at: dict[bytes, float] = {}

    @property
    def outstanding(self) -> int:
        return len(self.waiting) - len(self.ended_at)

    async def run(self) -> None:
        redis = await self.client.redis()
        stream = self.client.settings.streams.sagas
        give_up = time.monotonic() + BURST_TIMEOUT_S
        while self.outstanding:
            if time.monotonic() > give_up:
                raise RuntimeError(f"{self.outstanding} sagas of the backlog did not end: see the stack's logs")
            reply: Any = await redis.xread({stream: self.cursor}, count=1000, block=1000)
            for _, entries in reply:
                self.cursor = entries[-1][0]
                for _, fields in entries:
                    saga = fields.get(CORRELATION_ID.encode())
                    if fields.get(TYPE.encode()) in _TERMINAL and saga in self.waiting:
                        self.ended_at[saga] = time.perf_counter()


async def _loaded_round(client: AlphaSaga) -> tuple[list[float], float, float]:
    """One burst of normal sagas; the express latencies while it was queued, the normal
    reference's latency, and the seconds the burst took to drain."""
    redis = await client.redis()
    last: Any = await redis.xrevrange(client.settings.streams.sagas, count=1)
    cursor = last[0][0] if last else b"0-0"
    started = time.perf_counter()
    burst = await client.submit_many([REQUEST] * BACKLOG)
    reference = await client.submit(REQUEST)
    drain = Drain(client, {b.saga_id for b in burst} | {reference.saga_id}, cursor)
    draining = asyncio.create_task(drain.run())
    express: list[float] = []
    while drain.outstanding > 1 and not draining.done():
        ms = await _one(client, Priority.EXPRESS)
        if drain.outstanding > 1:  # normal sagas were queued until it ended
            express.append(ms)
    await draining
    reference_ms = (drain.ended_at[str(reference.saga_id).encode()] - started) * 1000
    return express, reference_ms, max(drain.ended_at.values()) - started


async def measure(s: Servers) -> dict[str, Any]:
    stack = Stack(s, 1, {})
    idle: list[float] = []
    loaded: list[float] = []
    references: list[float] = []
    drains: list[float] = []
    try:
        await stack.ready()
        async with AlphaSaga(stack.settings) as client:
            await client.connect(database=False)
            for _ in range(WARM_UP):
                await _one(client, Priority.EXPRESS)
            for _ in range(ROUNDS):  # idle and loaded alternate, so that a slower machine slows both
                idle += [await _one(client, Priority.EXPRESS) for _ in range(IDLE_SAGAS // ROUNDS)]
                express, reference, drained = await _loaded_round(client)
                loaded += express
                references.append(reference)
                drains.append(drained)
    finally:
        await stack.cleanup(s)
    return {
        "idle_p50": percentile(idle, 50),
        "idle_p95": percentile(idle, 95),
        "loaded_p50": percentile(loaded, 50) if loaded else float("nan"),
        "loaded_p95": percentile(loaded, 95) if loaded else float("nan"),
        "loaded_n": len(loaded),
        "idle_n": len(idle),
        "reference_ms": sorted(references)[len(references) // 2],
        "drain_s": sorted(drains)[len(drains) // 2],
    }


def markdown(r: dict[str, Any]) -> str:
    ratio = r["loaded_p95"] / r["idle_p95"]
    return "\n".join(
        [
            f"## The express lane: an express saga while {BACKLOG} normal sagas are queued (issue #25)\n",
            f"Workers that answer at once, one orchestrator, real processes; {ROUNDS} rounds alternating idle "
            f"and loaded. Loaded: express sagas one after another while the burst drained (median drain "
            f"{r['drain_s']:.1f} s), counted only when normal sagas were still outstanding as each ended.\n",
            "| express saga, end to end | sagas | p50 | p95 |",
            "|---|---:|---:|---:|",
            f"| idle system | {r['idle_n']} | {r['idle_p50']:.1f} ms | {r['idle_p95']:.1f} ms |",
            f"| {BACKLOG} normal sagas queued | {r['loaded_n']} | {r['loaded_p50']:.1f} ms "
            f"| {r['loaded_p95']:.1f} ms |",
            "",
            f"Loaded p95 / idle p95: **{ratio:.2f} times** (target: at most 2). A normal saga submitted right behind "
            f"the burst took {r['reference_ms']:,.0f} ms (median of the rounds).\n",
        ]
    )
