"""The issue's reference point, measured on this machine: a hand-written loop that makes
the round trips of a four-step saga, one saga at a time, in one process.

Per decision (the start, each of the four replies): one PostgreSQL statement that
appends the saga's events and outbox rows to the real ``events`` table and records the
inbox row, then one pipeline that sends the command and the lifecycle event and acks
the input. Per step the "worker" reads the command, and one pipeline sends its reply
and acks it; the "orchestrator" then reads the reply. No validation, no envelopes, no
aggregate, no second process: the floor of the I/O a saga needs, paid back to back.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from alphasaga_shared.eventstore.migrations import migrate

from .common import Servers, bench_settings, cleanup

STEPS = ("reasoning", "codegen", "ml", "backtest")

APPEND = """
WITH inbox_row AS (
    INSERT INTO inbox (consumer, message_id) VALUES ('raw', $1)
)
INSERT INTO events (stream_id, version, event_id, type, data)
SELECT * FROM unnest($2::text[], $3::int[], $4::uuid[], $5::text[], $6::jsonb[])
"""


async def _read_one(redis: aioredis.Redis, stream: str, group: str) -> bytes:
    """The next entry's id (its fields are not looked at)."""
    reply: Any = await redis.xreadgroup(group, "c", {stream: ">"}, count=1, block=1000)
    if not reply:
        raise RuntimeError(f"nothing arrived on {stream}")
    entry_id: bytes = reply[0][1][0][0]
    return entry_id


async def sagas_per_second(s: Servers, n: int = 300) -> float:
    """Sagas per second of the loop (one at a time, so 1000 / this is its ms per saga)."""
    settings = bench_settings(s)
    ns, schema = settings.namespace, settings.database_schema
    conn = await asyncpg.connect(s.database_url)
    await migrate(conn, schema)
    await conn.execute(f'SET search_path TO "{schema}"')
    redis = aioredis.from_url(s.redis_url)
    commands, replies, sagas = f"{ns}:cmd", f"{ns}:replies", f"{ns}:sagas"
    for stream in (commands, replies):
        await redis.xgroup_create(stream, "g", id="0", mkstream=True)
    try:
        started = time.perf_counter()
        for _ in range(n):
            await _one_saga(conn, redis, commands, replies, sagas)
        return n / (time.perf_counter() - started)
    finally:
        await redis.aclose()
        await conn.close()
        await cleanup(s, ns, schema)


async def _one_saga(conn: asyncpg.Connection, redis: aioredis.Redis, commands: str, replies: str, sagas: str) -> None:
    saga = uuid.uuid4()
    await redis.xadd(commands, {"type": "StartResearch", "saga_id": str(saga), "data": '{"dataset": "sp500"}'})
    incoming = await _read_one(redis, commands, "g")
    incoming_stream = commands
    saga_version = outbox_version = 0
    for step in (*STEPS, None):
        # The decision: two saga events (step completed, next commanded) and two outbox
        # rows (the command, the lifecycle event).
        kinds = ["StepSucceeded", "StepCommanded" if step else "Completed", "command", "lifecycle"]
        body = json.dumps({"saga_id": str(saga), "step": step, "attempt": 1, "outputs": {"k": "v" * 200}})
        await conn.execute(
            APPEND,
            # Entry ids are unique within a stream only: the start and a reply can share one.
            f"{saga}/{incoming_stream}/{incoming.decode()}",
            [f"saga-{saga}"] * 2 + [f"outbox:{saga}"] * 2,
            [saga_version + 1, saga_version + 2, outbox_version + 1, outbox_version + 2],
            [uuid.uuid4() for _ in kinds],
            kinds,
            [body] * len(kinds),
        )
        saga_version += 2
        outbox_version += 2
        async with redis.pipeline(transaction=False) as pipe:
            pipe.xadd(sagas, {"type": "lifecycle", "data": body})
            if step:
                pipe.xadd(commands, {"type": "command", "data": body})
            pipe.xack(incoming_stream, "g", incoming)
            await pipe.execute()
        if step is None:
            return
        command = await _read_one(redis, commands, "g")  # the worker
        async with redis.pipeline(transaction=False) as pipe:
            pipe.xadd(replies, {"type": "reply", "data": body})
            pipe.xack(commands, "g", command)
            await pipe.execute()
        incoming = await _read_one(redis, replies, "g")  # the orchestrator
        incoming_stream = replies
