"""One relay publishes at a time, also when the session holding its lock is cut (a
failover, a restart, an idle-session killer): the holder stops at once, saves where it
got to, stays up, and the relay that takes over publishes no row a second time."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import redis.asyncio as aioredis

from alphasaga_contracts import Service
from alphasaga_contracts import saga as sg
from alphasaga_contracts.research import ResearchRequest
from alphasaga_shared.config import Settings
from alphasaga_shared.eventstore import EventStore, outbox_stream
from alphasaga_shared.outbox import RELAY_LOCK
from alphasaga_shared.outbox_rows import outbox_events
from alphasaga_shared.wire import Outgoing, envelope_for
from tests.support.helpers import Proc, eventually
from tests.support.sessions import terminate_lock_holder

ROWS = 6_000


async def commit_rows(store: EventStore, target: str, n: int) -> None:
    request = ResearchRequest(dataset="sp500")
    for first in range(0, n, 1000):
        outgoing = []
        for _ in range(min(1000, n - first)):
            saga_id = uuid.uuid4()
            message = sg.StartResearch(saga_id=saga_id, request=request)
            outgoing.append(Outgoing(target, envelope_for(message, correlation_id=str(saga_id))))
        await store.append(outbox_stream(f"failover-{first}"), outbox_events(outgoing), expected_version=None)


async def test_relays_whose_lock_session_is_cut_mid_batch_stop_and_no_row_is_published_twice(
    settings: Settings, env: dict[str, str], redis: aioredis.Redis, store: EventStore, tmp_path: Any
) -> None:
    target = settings.streams.commands(Service.ORCHESTRATOR)
    await commit_rows(store, target, ROWS)
    relay_env = {**env, "ALPHASAGA_RELAY_BATCH": "10"}
    relays = [Proc.module("alphasaga_shared.outbox", relay_env, tmp_path / f"relay{i}.log") for i in (1, 2)]
    try:
        for relay in relays:
            await relay.wait_for("ready", timeout=60)
        # Three cuts while the backlog is being published, each of whichever relay holds
        # the lock then: the other may take over, or the same one take it again.
        for threshold in (300, 1_500, 3_000):

            async def reached(n: int = threshold) -> bool:
                return int(await redis.xlen(target)) >= n

            await eventually(reached, timeout=120, interval=0.01)
            holder = await terminate_lock_holder(settings.database_url or "", store.lock_key(RELAY_LOCK))
            assert holder is not None, "a relay held the lock"
            assert int(await redis.xlen(target)) < ROWS, "the session was cut while the backlog was published"

        async def all_published() -> bool:
            return int(await redis.xlen(target)) >= ROWS

        await eventually(all_published, timeout=120, interval=0.2)
        await asyncio.sleep(1.0)  # time for a second copy to show, if one were sent
        entries: Any = await redis.xrange(target)
        ids = [fields[b"message_id"].decode() for _, fields in entries]
        assert len(ids) - len(set(ids)) == 0, "rows published twice"
        assert len(set(ids)) == ROWS
        assert all(relay.popen.poll() is None for relay in relays), "no relay exited"
        outages = [line for relay in relays for line in relay.text().splitlines() if "relay: LockLost" in line]
        assert len(outages) == 3, "one line per outage"
    finally:
        for relay in relays:
            assert relay.stop() == 0, relay.text()[-3000:]
