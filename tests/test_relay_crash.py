"""Kill the relay between publishing and recording its position: on restart the command
is published again (at least once) and the consumer's inbox drops the duplicate."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from alphasaga_contracts import Service
from alphasaga_contracts import saga as sg
from alphasaga_contracts.research import ResearchRequest
from alphasaga_orchestrator import bootstrap
from alphasaga_shared.bus import Bus
from alphasaga_shared.config import Settings
from alphasaga_shared.eventstore import START, EventStore, outbox_stream
from alphasaga_shared.outbox import RELAY_POSITION
from alphasaga_shared.outbox_rows import outbox_events
from alphasaga_shared.wire import Outgoing, envelope_for
from tests.support.helpers import Proc, eventually


async def test_relay_crash_after_publish_republishes_and_the_inbox_drops_the_duplicate(
    settings: Settings, env: dict[str, str], redis: aioredis.Redis, store: EventStore, tmp_path: Path
) -> None:
    target = settings.streams.commands(Service.ORCHESTRATOR)
    saga_id = uuid.uuid4()
    start = sg.StartResearch(saga_id=saga_id, request=ResearchRequest(dataset="sp500"))
    env_out = envelope_for(start, correlation_id=str(saga_id))
    async with store.transaction() as conn:  # committed: from here on it must reach Redis
        await store.append(
            outbox_stream("client"), outbox_events([Outgoing(target, env_out)]), expected_version=None, conn=conn
        )

    crashing = Proc.module("tests.support.crashing_relay", env, tmp_path / "relay1.log")
    assert crashing.wait_exit(60) == 137, crashing.text()
    assert await redis.xlen(target) == 1
    assert await store.load_position(RELAY_POSITION) == START, "the crash came before the position was saved"

    relay = Proc.module("alphasaga_shared.outbox", env, tmp_path / "relay2.log")
    try:
        await eventually(lambda: _xlen_at_least(redis, target, 2), timeout=30)
        await eventually(lambda: _position_saved(store), timeout=10)
    finally:
        assert relay.stop() == 0, relay.text()
    raw: Any = await redis.xrange(target)
    assert [f[b"message_id"].decode() for _, f in raw] == [env_out.message_id] * 2, "published twice, same id"

    # The real orchestrator consumes both copies: one saga, one inbox record.
    bus = Bus(settings, service="orchestrator")
    orchestrator = bootstrap.orchestrator(store, settings)
    bus.subscribe(target, orchestrator.handle)
    await bus.start()
    try:
        await eventually(lambda: _all_acked(redis, target, "orchestrator", 2), timeout=15)
    finally:
        await bus.stop()
    saga_events = await store.read_stream(f"saga-{saga_id}")
    assert [e.type.rsplit(".", 1)[-1] for e in saga_events] == ["Started", "StepCommanded"]
    async with store.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM inbox WHERE message_id = $1", env_out.message_id) == 1


async def _xlen_at_least(redis: aioredis.Redis, stream: str, n: int) -> bool:
    return int(await redis.xlen(stream)) >= n


async def _position_saved(store: EventStore) -> bool:
    return await store.load_position(RELAY_POSITION) != START


async def _all_acked(redis: aioredis.Redis, stream: str, group: str, n: int) -> bool:
    groups: Any = await redis.xinfo_groups(stream)
    g = next((g for g in groups if g["name"].decode() == group), None)
    return g is not None and int(g["pending"]) == 0 and int(g.get("entries-read") or 0) >= n


async def test_a_relay_in_another_process_is_woken_by_the_commit_not_its_poll(
    settings: Settings, env: dict[str, str], redis: aioredis.Redis, store: EventStore, tmp_path: Path
) -> None:
    # A poll of ten minutes: whatever the relay publishes within the test, a NOTIFY woke it for.
    relay = Proc.module("alphasaga_shared.outbox", {**env, "ALPHASAGA_RELAY_POLL_MS": "600000"}, tmp_path / "r.log")
    try:
        await relay.wait_for("relay is publishing the outbox", timeout=60)
        await asyncio.sleep(0.2)  # past the relay's first read, into its long wait
        target = await start_a_saga(store, settings)
        await eventually(lambda: _xlen_at_least(redis, target, 1), timeout=30)
    finally:
        assert relay.stop() == 0, relay.text()


@contextlib.asynccontextmanager
async def relay_held_back(
    settings: Settings, env: dict[str, str], tmp_path: Path, poll_ms: int
) -> AsyncIterator[asyncpg.transaction.Transaction]:
    """A relay in another process whose tail is held back: a transaction that has an id,
    begun before anything the test commits, runs until the test rolls it back (yielded)."""
    relay = Proc.module("alphasaga_shared.outbox", {**env, "ALPHASAGA_RELAY_POLL_MS": str(poll_ms)}, tmp_path / "r.log")
    blocker = await asyncpg.connect(settings.database_url)
    try:
        await relay.wait_for("relay is publishing the outbox", timeout=60)
        held = blocker.transaction()
        await held.start()
        await blocker.fetchval("SELECT pg_current_xact_id()")  # it has an id: the tail waits for it
        yield held
    finally:
        await blocker.close()
        assert relay.stop() == 0, relay.text()


async def test_a_commit_held_back_behind_an_older_running_transaction_is_published_once_that_ends(
    settings: Settings, env: dict[str, str], redis: aioredis.Redis, store: EventStore, tmp_path: Path
) -> None:
    """The NOTIFY of a commit can come while the tail may not read it yet (a transaction
    that began before it still runs, anywhere on the server): the relay must look again
    soon, not wait for its poll. A NOTIFY that carries no rows, as for a row too large for
    one (``outbox_rows.notice``)."""
    async with relay_held_back(settings, env, tmp_path, poll_ms=600_000) as held:
        target = await record_a_start(store, settings)
        await asyncio.sleep(0.5)
        assert await redis.xlen(target) == 0, "the tail held the commit back"
        await held.rollback()
        await eventually(lambda: _xlen_at_least(redis, target, 1), timeout=30)


async def test_a_commit_whose_notify_carries_its_rows_is_published_at_once_even_when_held_back_and_once(
    settings: Settings, env: dict[str, str], redis: aioredis.Redis, store: EventStore, tmp_path: Path
) -> None:
    """An orchestrator's commit carries its rows in its NOTIFY: the relay in another process
    publishes them without waiting for the tail, and the tail, once it may read them,
    does not publish them again."""
    async with relay_held_back(settings, env, tmp_path, poll_ms=50) as held:
        target = await start_a_saga(store, settings)
        await eventually(lambda: _xlen_at_least(redis, target, 1), timeout=30)
        await held.rollback()
        await eventually(lambda: _position_saved(store), timeout=10)  # the tail has passed it
        await asyncio.sleep(0.3)
        assert await redis.xlen(target) == 1, "published once"


async def record_a_start(store: EventStore, settings: Settings) -> str:
    """Record a start in the outbox with a NOTIFY that carries no rows; returns the stream
    it goes to."""
    saga_id = uuid.uuid4()
    start = sg.StartResearch(saga_id=saga_id, request=ResearchRequest(dataset="sp500"))
    target = settings.streams.commands(Service.ORCHESTRATOR)
    async with store.transaction() as conn:
        rows = outbox_events([Outgoing(target, envelope_for(start, correlation_id=str(saga_id)))])
        await store.append(outbox_stream(str(saga_id)), rows, expected_version=None, conn=conn)
        await store.notify_outbox(conn)
    return target


async def start_a_saga(store: EventStore, settings: Settings) -> str:
    """Commit a saga's start, as an orchestrator without a relay of its own does (with a
    NOTIFY carrying its rows); returns the stream its first command goes to."""
    orchestrator = bootstrap.orchestrator(store, settings)
    saga_id = uuid.uuid4()
    start = sg.StartResearch(saga_id=saga_id, request=ResearchRequest(dataset="sp500"))
    await orchestrator.apply(saga_id, envelope_for(start, correlation_id=str(saga_id)))
    return settings.streams.commands(Service.REASONING)
