"""The express lane (issue #25 §4): workers that answer at once (tests/support/sim_workers.py),
one orchestrator process, real Redis and PostgreSQL.

An express saga's latency end to end (submit to its terminal lifecycle event, as a client
sees it) on an idle system, and while a burst of normal sagas is queued: each round
submits the burst, then runs express sagas one after another until the burst has drained,
keeping only those that ended while normal sagas were still outstanding. A normal saga
submitted right behind the burst is the reference: what an express saga would wait
without its lane. Target: the loaded p95 at most twice the idle p95. Beside it, in the same
run, the floor any design on this PostgreSQL has: one small commit made after each express
saga, idle and loaded.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

import asyncpg

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


class CommitProbe:
    """One small commit on a connection of its own, made after each express saga: what
    PostgreSQL, shared with the burst, gives any design for the commits an express saga
    must make (five here). The reference in the same run for the lane's ratio."""

    def __init__(self, conn: asyncpg.Connection, schema: str) -> None:
        self.conn, self.table = conn, f'"{schema}".express_probe'

    @classmethod
    async def open(cls, database_url: str, schema: str) -> CommitProbe:
        conn = await asyncpg.connect(database_url)
        probe = cls(conn, schema)
        await conn.execute(
            f"CREATE TABLE {probe.table} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at timestamptz)"
        )
        return probe

    async def once(self) -> float:
        """Milliseconds for one row written and committed."""
        started = time.perf_counter()
        await self.conn.execute(f"INSERT INTO {self.table} (at) VALUES (now())")
        return (time.perf_counter() - started) * 1000


async def _loaded_round(client: AlphaSaga, probe: CommitProbe) -> tuple[list[float], list[float], float, float]:
    """One burst of normal sagas; the express latencies while it was queued and the probe's
    commits between them, the normal reference's latency, and the seconds the burst took
    to drain."""
    redis = await client.redis()
    last: Any = await redis.xrevrange(client.settings.streams.sagas, count=1)
    cursor = last[0][0] if last else b"0-0"
    started = time.perf_counter()
    burst = await client.submit_many([REQUEST] * BACKLOG)
    reference = await client.submit(REQUEST)
    drain = Drain(client, {b.saga_id for b in burst} | {reference.saga_id}, cursor)
    draining = asyncio.create_task(drain.run())
    express: list[float] = []
    commits: list[float] = []
    while drain.outstanding > 1 and not draining.done():
        ms = await _one(client, Priority.EXPRESS)
        if drain.outstanding > 1:  # normal sagas were queued until it ended
            express.append(ms)
        commit_ms = await probe.once()
        if drain.outstanding > 1:
            commits.append(commit_ms)
    await draining
    reference_ms = (drain.ended_at[str(reference.saga_id).encode()] - started) * 1000
    return express, commits, reference_ms, max(drain.ended_at.values()) - started


async def measure(s: Servers) -> dict[str, Any]:
    stack = Stack(s, 1, {})
    idle: list[float] = []
    loaded: list[float] = []
    idle_commits: list[float] = []
    loaded_commits: list[float] = []
    references: list[float] = []
    drains: list[float] = []
    load = [os.getloadavg()[0]]
    try:
        await stack.ready()
        probe = await CommitProbe.open(s.database_url, stack.settings.database_schema)
        async with AlphaSaga(stack.settings) as client:
            await client.connect(database=False)
            for _ in range(WARM_UP):
                await _one(client, Priority.EXPRESS)
            for _ in range(ROUNDS):  # idle and loaded alternate, so that a slower machine slows both
                for _ in range(IDLE_SAGAS // ROUNDS):
                    idle.append(await _one(client, Priority.EXPRESS))
                    idle_commits.append(await probe.once())
                express, commits, reference, drained = await _loaded_round(client, probe)
                loaded += express
                loaded_commits += commits
                references.append(reference)
                drains.append(drained)
        await probe.conn.close()
    finally:
        await stack.cleanup(s)
    load.append(os.getloadavg()[0])
    return {
        "load": load,
        "commit_idle_p50": percentile(idle_commits, 50),
        "commit_idle_p95": percentile(idle_commits, 95),
        "commit_loaded_p50": percentile(loaded_commits, 50),
        "commit_loaded_p95": percentile(loaded_commits, 95),
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
    floor = r["commit_loaded_p95"] / r["commit_idle_p95"]
    return "\n".join(
        [
            f"## The express lane: an express saga while {BACKLOG} normal sagas are queued (issue #25)\n",
            f"Workers that answer at once, one orchestrator, real processes; {ROUNDS} rounds alternating idle "
            f"and loaded. Loaded: express sagas one after another while the burst drained (median drain "
            f"{r['drain_s']:.1f} s), counted only when normal sagas were still outstanding as each ended. "
            f"Load average {r['load'][0]:.1f} at the start, {r['load'][1]:.1f} at the end.\n",
            "| express saga, end to end | sagas | p50 | p95 |",
            "|---|---:|---:|---:|",
            f"| idle system | {r['idle_n']} | {r['idle_p50']:.1f} ms | {r['idle_p95']:.1f} ms |",
            f"| {BACKLOG} normal sagas queued | {r['loaded_n']} | {r['loaded_p50']:.1f} ms "
            f"| {r['loaded_p95']:.1f} ms |",
            f"| the floor: one small commit to PostgreSQL after each saga, idle | {r['idle_n']} "
            f"| {r['commit_idle_p50']:.2f} ms | {r['commit_idle_p95']:.2f} ms |",
            f"| the floor, {BACKLOG} normal sagas queued | {r['loaded_n']} "
            f"| {r['commit_loaded_p50']:.2f} ms | {r['commit_loaded_p95']:.2f} ms |",
            "",
            f"Loaded p95 / idle p95: **{ratio:.2f} times** (target: at most 2). A normal saga submitted right behind "
            f"the burst took {r['reference_ms']:,.0f} ms (median of the rounds). The floor's own loaded p95 / idle "
            f"p95: {floor:.2f} times (an express saga commits five times).\n",
        ]
    )
