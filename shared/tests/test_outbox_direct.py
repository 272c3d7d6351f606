"""The relay's direct paths: rows the lock holder has just committed, and rows a commit
elsewhere carried in its NOTIFY, go to Redis at once; the tail skips them, and rows whose
direct publish failed are still published."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from alphasaga_contracts import saga as sg
from alphasaga_contracts.research import ResearchRequest
from alphasaga_shared.bus.redis_log import RedisLog
from alphasaga_shared.config import Settings
from alphasaga_shared.eventstore import START, EventStore, NewEvent, RecordedEvent, outbox_channel, outbox_stream
from alphasaga_shared.outbox import RELAY_LOCK, RELAY_POSITION, Relay
from alphasaga_shared.outbox_rows import notice, outbox_events
from alphasaga_shared.wire import Outgoing, envelope_for
from tests.support.helpers import eventually
from tests.support.sessions import terminate_lock_holder


def rows_for(stream: str, n: int) -> list[NewEvent]:
    outgoing = []
    for _ in range(n):
        saga_id = uuid.uuid4()
        event = sg.StartResearch(saga_id=saga_id, request=ResearchRequest(dataset="sp500"))
        outgoing.append(Outgoing(stream, envelope_for(event, correlation_id=str(saga_id))))
    return outbox_events(outgoing)


async def commit(store: EventStore, rows: list[NewEvent]) -> None:
    await store.append(outbox_stream("direct-test"), rows, expected_version=None)


async def entries(redis: aioredis.Redis, stream: str) -> list[str]:
    return [fields[b"message_id"].decode() for _, fields in await redis.xrange(stream)]


async def published_by_the_tail(redis: aioredis.Redis, stream: str, rows: list[NewEvent]) -> list[str]:
    """The stream's message ids once the tail has had time to publish ``rows`` (and a
    little more, so that a second copy would show), sorted."""
    for _ in range(100):
        if len(await entries(redis, stream)) == len(rows):
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    return sorted(await entries(redis, stream))


async def held_relay(store: EventStore, redis: aioredis.Redis, poll_ms: int = 20) -> tuple[Relay, asyncio.Task[None]]:
    relay = Relay(store, RedisLog(redis, Settings()), poll_ms=poll_ms, save_every_ms=0)
    task = asyncio.create_task(relay.run())
    for _ in range(200):
        if relay.holding:
            return relay, task
        await asyncio.sleep(0.01)
    raise AssertionError("the relay never took its lock")


async def stop(relay: Relay, task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_directly_published_rows_are_not_published_again_by_the_tail(
    store: EventStore, redis: aioredis.Redis, namespace: str
) -> None:
    stream = f"{namespace}:cmd:orchestrator"
    relay, task = await held_relay(store, redis)
    try:
        rows = rows_for(stream, 5)
        async with relay.publishing(rows) as direct:
            await commit(store, rows)
        assert direct
        assert await entries(redis, stream) == [r.metadata["message_id"] for r in rows]
        await asyncio.sleep(0.2)  # several tail passes over the committed rows
        assert len(await entries(redis, stream)) == 5, "the tail skipped what was published directly"
        assert not relay._claimed, "every claim was met by the tail"
    finally:
        await stop(relay, task)


async def commit_elsewhere(store: EventStore, rows: list[NewEvent], payload: str) -> None:
    """Commit ``rows`` as an orchestrator that does not hold the relay lock does: with a
    NOTIFY carrying ``payload``."""
    async with store.transaction() as conn:
        await store.append(outbox_stream("notice-test"), rows, expected_version=None, conn=conn)
        await store.notify_outbox(conn, payload)


async def test_rows_a_commit_elsewhere_carries_in_its_notify_are_published_without_being_read_back(
    store: EventStore, redis: aioredis.Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = f"{namespace}:cmd:orchestrator"
    relay, task = await held_relay(store, redis, poll_ms=600_000)  # only a NOTIFY wakes it
    read_back: list[int] = []
    by_positions = store.by_positions

    async def recorded(positions: list[int], **kwargs: Any) -> list[RecordedEvent]:
        read_back.extend(positions)
        return await by_positions(positions, **kwargs)

    monkeypatch.setattr(store, "by_positions", recorded)
    try:
        await asyncio.sleep(0.2)  # past its first pass, into its wait
        rows = rows_for(stream, 3)
        await commit_elsewhere(store, rows, notice(rows))
        assert await published_by_the_tail(redis, stream, rows) == sorted(r.metadata["message_id"] for r in rows)
        assert read_back == [], "rows carried by the NOTIFY are not read back"

        async def all_met() -> bool:
            return not relay._claimed

        await eventually(all_met, timeout=10)  # the tail met them all, as claimed
    finally:
        await stop(relay, task)


async def test_a_notice_of_rows_the_tail_has_published_publishes_nothing_more(
    store: EventStore, redis: aioredis.Redis, namespace: str
) -> None:
    """A NOTIFY can reach the relay after its tail read the commit (the server sends it at
    the end of the tail's query): its rows must not go out twice."""
    stream = f"{namespace}:cmd:orchestrator"
    relay, task = await held_relay(store, redis)
    try:
        rows = rows_for(stream, 5)
        await commit_elsewhere(store, rows, "")  # a plain wake-up: the tail publishes them
        assert await published_by_the_tail(redis, stream, rows) == sorted(r.metadata["message_id"] for r in rows)
        async with store.pool.acquire() as conn:  # their notice, late
            await conn.execute("SELECT pg_notify($1, $2)", outbox_channel(store.schema), notice(rows))
        await asyncio.sleep(0.3)
        assert len(await entries(redis, stream)) == 5, "published once"
    finally:
        await stop(relay, task)


async def test_rows_whose_direct_publish_failed_are_published_by_the_tail(
    store: EventStore, redis: aioredis.Redis, namespace: str
) -> None:
    stream = f"{namespace}:cmd:orchestrator"
    relay, task = await held_relay(store, redis)
    unreachable = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    try:
        rows = rows_for(stream, 3)
        relay.sink = RedisLog(unreachable, Settings())
        async with relay.publishing(rows):  # the publish fails, and must not raise
            await commit(store, rows)
        relay.sink = RedisLog(redis, Settings())
        assert await published_by_the_tail(redis, stream, rows) == sorted(r.metadata["message_id"] for r in rows)
    finally:
        await stop(relay, task)
        await unreachable.aclose()


HUNG_PUBLISH_S = 5.0


async def test_rows_skipped_while_their_direct_publish_hangs_then_fails_are_published_by_the_tail(
    store: EventStore, redis: aioredis.Redis, namespace: str
) -> None:
    """The hard case: the tail passes the claimed rows while their direct publish is still
    waiting on a Redis that does not answer. Its position must not be saved past them, and
    when the publish fails they must be handed back to the tail, not lost."""
    stream = f"{namespace}:cmd:orchestrator"

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)

    silent = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    # The publish gives up after this; the tail (a 20 ms poll) must pass the rows before that.
    unanswering = aioredis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=HUNG_PUBLISH_S)
    relay, task = await held_relay(store, redis)
    try:
        rows = rows_for(stream, 3)
        relay.sink = RedisLog(unanswering, Settings())

        async def commit_and_publish() -> None:
            async with relay.publishing(rows):
                await commit(store, rows)

        publishing = asyncio.create_task(commit_and_publish())

        async def the_tail_passed_them() -> bool:
            assert not publishing.done(), "the publish ended before the tail passed its rows"
            return relay._skipped_unconfirmed == {r.event_id for r in rows}

        # Waited for, not slept on: a fixed 0.25 s saw no tail pass yet on a busy machine.
        await eventually(the_tail_passed_them, timeout=HUNG_PUBLISH_S - 1)
        assert await store.load_position(RELAY_POSITION) == START, "no position saved past them"
        await publishing  # times out, must not raise
        relay.sink = RedisLog(redis, Settings())
        assert await published_by_the_tail(redis, stream, rows) == sorted(r.metadata["message_id"] for r in rows)
    finally:
        await stop(relay, task)
        await unanswering.aclose()
        silent.close()


async def test_a_relay_taking_over_does_not_publish_again_what_the_holder_published_past_a_running_commit(
    store: EventStore, redis: aioredis.Redis, namespace: str, settings: Settings
) -> None:
    """The holder publishes its own commits at once, also past a commit of another process
    that is still running (the tail waits for that one). When the holder's lock session is
    cut there, the relay that takes over starts from the holder's saved position, before
    the running commit: it must pass over what the holder published past it."""
    stream = f"{namespace}:cmd:orchestrator"
    holder, holder_task = await held_relay(store, redis)
    successor = Relay(store, RedisLog(redis, Settings()), poll_ms=20, save_every_ms=0)
    successor_task: asyncio.Task[None] | None = None
    earlier, later = rows_for(stream, 2), rows_for(stream, 2)
    try:
        async with store.transaction() as conn:
            await store.append(outbox_stream("direct-test-running"), earlier, expected_version=None, conn=conn)
            async with holder.publishing(later):
                await commit(store, later)
            successor_task = asyncio.create_task(successor.run())
            assert await terminate_lock_holder(settings.database_url or "", store.lock_key(RELAY_LOCK)) is not None
            await stop(holder, holder_task)  # it learns of the cut, settles and goes
            for _ in range(500):
                if successor.holding:
                    break
                await asyncio.sleep(0.01)
            assert successor.holding, "the successor took the lock"
        ids = await published_by_the_tail(redis, stream, earlier + later)
        assert ids == sorted(r.metadata["message_id"] for r in earlier + later), "each row published once"
    finally:
        await stop(holder, holder_task)
        if successor_task is not None:
            await stop(successor, successor_task)


async def test_a_relay_stopped_as_it_is_woken_stops(store: EventStore, redis: aioredis.Redis) -> None:
    """A stop (a cancel) that comes together with a wake-up, as when the lock is lost and
    the service stops at once, must end the relay, not be swallowed by its wait."""
    relay, task = await held_relay(store, redis)
    await asyncio.sleep(0.1)  # into its wait for work
    relay.wake()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        async with asyncio.timeout(10):  # a deadline the relay promises: it stops at once
            await task
    assert task.cancelled()


async def test_the_tail_closes_an_outbox_once_it_passes_its_end(
    store: EventStore, redis: aioredis.Redis, namespace: str
) -> None:
    """What a re-publish reads is the open outboxes (docs/decisions/0028): a saga's outbox
    leaves them when the relay has passed its terminal row, a running one stays."""
    stream = f"{namespace}:evt:sagas"
    running, ended = uuid.uuid4(), uuid.uuid4()
    for saga_id, events in (
        (running, [sg.StartResearch(saga_id=running, request=ResearchRequest(dataset="sp500"))]),
        (
            ended,
            [
                sg.StartResearch(saga_id=ended, request=ResearchRequest(dataset="sp500")),
                sg.RequestRejected(saga_id=ended, request_type="x", message_id="m", reason="test"),
            ],
        ),
    ):
        outgoing = [Outgoing(stream, envelope_for(e, correlation_id=str(saga_id))) for e in events]
        await store.append(outbox_stream(str(saga_id)), outbox_events(outgoing), expected_version=0)

    async def still_open() -> set[str]:
        async with store.pool.acquire() as conn:
            return {r["stream_id"] for r in await conn.fetch("SELECT stream_id FROM open_outboxes")}

    assert await still_open() == {outbox_stream(str(running)), outbox_stream(str(ended))}
    relay, task = await held_relay(store, redis)
    try:
        for _ in range(200):
            if await still_open() == {outbox_stream(str(running))}:
                break
            await asyncio.sleep(0.02)
        assert await still_open() == {outbox_stream(str(running))}
        assert len(await entries(redis, stream)) == 3
    finally:
        await stop(relay, task)


async def test_a_first_start_on_a_new_redis_is_not_reported_as_redis_forgetting(
    store: EventStore, redis: aioredis.Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A new Redis holds no sentinel, as one that forgot everything does; with no unfinished
    saga there is nothing lost, and no warning to give (every first ``alphasaga up`` gave one)."""
    caplog.set_level(logging.INFO, logger="alphasaga_shared.outbox")
    relay = Relay(store, RedisLog(redis, Settings()), poll_ms=20, save_every_ms=0, namespace=namespace)
    task = asyncio.create_task(relay.run())
    try:

        async def sentinel_checked() -> bool:
            return any("sentinel" in r.getMessage() for r in caplog.records)

        await eventually(sentinel_checked, timeout=30)
    finally:
        await stop(relay, task)
    said = [(r.levelno, r.getMessage()) for r in caplog.records if "sentinel" in r.getMessage()]
    assert all(level == logging.INFO for level, _ in said), said
    assert not any("Redis forgot" in message for _, message in said), said
