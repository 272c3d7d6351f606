"""The event store against a real PostgreSQL, each test in its own schema."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from alphasaga_shared.eventstore import START, Checkpoint, ConcurrencyError, EventStore, NewEvent, Position
from alphasaga_shared.eventstore.migrations import bundled_migrations, migrate
from tests.support.sessions import running_transactions_ended


async def test_append_and_read_a_stream(store: EventStore) -> None:
    assert await store.append("s-1", [NewEvent("A", {"n": 1}), NewEvent("B", {"t": "é"})], expected_version=0) == 2
    assert await store.append("s-1", [NewEvent("C", {})], expected_version=2) == 3
    events = await store.read_stream("s-1")
    assert [(e.version, e.type) for e in events] == [(1, "A"), (2, "B"), (3, "C")]
    assert events[1].data == {"t": "é"}
    assert [e.type for e in await store.read_stream("s-1", after_version=2)] == ["C"]


async def test_wrong_expected_version_is_a_conflict(store: EventStore) -> None:
    await store.append("s-1", [NewEvent("A", {})], expected_version=0)
    with pytest.raises(ConcurrencyError):
        await store.append("s-1", [NewEvent("B", {})], expected_version=0)
    with pytest.raises(ConcurrencyError):  # ahead of the stream: a gap would follow
        await store.append("s-1", [NewEvent("B", {})], expected_version=5)
    assert [e.version for e in await store.read_stream("s-1")] == [1]


async def test_two_concurrent_appends_at_the_same_version_one_wins(store: EventStore) -> None:
    await store.append("s-1", [NewEvent("A", {})], expected_version=0)
    # Both transactions append at version 1 and overlap in time: the second blocks on
    # the first's index entry and must lose when the first commits.
    first = await store.pool.acquire()
    second = await store.pool.acquire()
    try:
        tx1 = first.transaction()
        await tx1.start()
        await store.append("s-1", [NewEvent("from-first", {})], expected_version=1, conn=first)
        tx2 = second.transaction()
        await tx2.start()
        contender = asyncio.create_task(
            store.append("s-1", [NewEvent("from-second", {})], expected_version=1, conn=second)
        )
        await asyncio.sleep(0.2)
        assert not contender.done(), "the second append should wait for the first transaction"
        await tx1.commit()
        with pytest.raises(ConcurrencyError):
            await contender
        await tx2.rollback()
    finally:
        await store.pool.release(first)
        await store.pool.release(second)
    assert [e.type for e in await store.read_stream("s-1")] == ["A", "from-first"]


async def test_many_racing_appends_exactly_one_wins(store: EventStore) -> None:
    results = await asyncio.gather(
        *(store.append("race", [NewEvent(f"e{i}", {})], expected_version=0) for i in range(8)),
        return_exceptions=True,
    )
    assert sum(r == 1 for r in results) == 1
    assert sum(isinstance(r, ConcurrencyError) for r in results) == 7


@pytest.mark.parametrize(
    "statement",
    ["UPDATE events SET type = 'changed'", "DELETE FROM events", "DELETE FROM events WHERE false", "TRUNCATE events"],
)
async def test_the_database_refuses_to_change_events(store: EventStore, statement: str) -> None:
    await store.append("s-1", [NewEvent("A", {})], expected_version=0)
    async with store.pool.acquire() as conn:
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await conn.execute(statement)
    assert len(await store.read_stream("s-1")) == 1


async def test_tailing_reader_never_skips_a_late_commit(store: EventStore) -> None:
    """T1 writes first (lower global position) and commits last; a reader that saved its
    position in between must still get T1's row."""
    slow = await store.pool.acquire()
    try:
        tx = slow.transaction()
        await tx.start()
        await store.append("slow", [NewEvent("late", {})], expected_version=0, conn=slow)
        await store.append("fast", [NewEvent("early", {})], expected_version=0)  # commits now

        seen: list[str] = []
        position = START
        batch = await store.read_all(position)
        seen += [e.type for e in batch]
        if batch:
            position = batch[-1].position
        await store.save_position("reader", position)

        await tx.commit()
    finally:
        await store.pool.release(slow)

    position = await store.load_position("reader")
    await running_transactions_ended(store.pool)
    seen += [e.type for e in await store.read_all(position)]
    assert sorted(seen) == ["early", "late"], seen
    assert seen.count("late") == 1 and seen.count("early") == 1


async def test_read_all_is_in_commit_order_and_pages(store: EventStore) -> None:
    for i in range(5):
        await store.append(f"s-{i}", [NewEvent("E", {"i": i}), NewEvent("F", {"i": i})], expected_version=0)
    await running_transactions_ended(store.pool)
    pages: list[int] = []
    position = START
    while batch := await store.read_all(position, limit=3):
        pages.append(len(batch))
        position = batch[-1].position
    assert pages == [3, 3, 3, 1]
    everything = await store.read_all(START, limit=100)
    assert [e.position for e in everything] == sorted(e.position for e in everything)


async def test_positions_round_trip(store: EventStore) -> None:
    assert await store.load_position("nobody") == START
    await store.save_position("p", Position(123456789012, 42))
    await store.save_position("p", Position(123456789013, 43))
    assert await store.load_position("p") == Position(123456789013, 43)


async def test_migrations_apply_once_under_concurrency(servers: Any, schema: str) -> None:
    fresh = schema + "_m"
    conns = [await asyncpg.connect(servers.database_url) for _ in range(4)]
    try:
        applied = await asyncio.gather(*(migrate(c, fresh) for c in conns))
        rows = await conns[0].fetch(f'SELECT number FROM "{fresh}".schema_migrations ORDER BY number')
    finally:
        await conns[0].execute(f'DROP SCHEMA IF EXISTS "{fresh}" CASCADE')
        for c in conns:
            await c.close()
    n = len(bundled_migrations())
    assert sorted(len(a) for a in applied) == [0, 0, 0, n], applied
    assert [r["number"] for r in rows] == list(range(1, n + 1))


async def test_a_second_pool_has_its_own_settings_the_same_schema_and_closes_with_the_store(
    store: EventStore,
) -> None:
    other = await store.pool_with({"plan_cache_mode": "force_generic_plan"}, application_name="alphasaga-test")
    async with other.acquire() as conn:
        assert await conn.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
        assert await conn.fetchval("SELECT current_schema()") == store.schema
        assert await conn.fetchval("""SELECT '{"a": 1}'::jsonb""") == {"a": 1}  # the same codecs
    async with store.pool.acquire() as conn:
        assert await conn.fetchval("SHOW plan_cache_mode") == "auto"  # the store's own pool is untouched
    await store.close()
    assert other.is_closing()


async def test_terminate_closes_every_pool_of_the_store(store: EventStore) -> None:
    other = await store.pool_with({}, application_name="alphasaga-test")
    store.terminate()
    assert other.is_closing() and store.pool.is_closing()


async def test_a_store_without_a_dsn_cannot_open_a_second_pool(store: EventStore) -> None:
    bare = EventStore(store.pool, store.schema)
    with pytest.raises(RuntimeError, match="no DSN"):
        await bare.pool_with({}, application_name="x")


async def test_a_checkpoint_taken_again_refuses_saves_made_with_the_old_epoch(store: EventStore) -> None:
    """The relay's fence: once a successor takes the checkpoint, the relay that lost the
    lock can no longer overwrite what the successor read."""
    first = await store.take_checkpoint("relay")
    assert first.position == START and first.published_ahead == frozenset()
    ahead = frozenset({uuid.uuid4()})
    assert await store.save_checkpoint("relay", Checkpoint(Position(7, 70), ahead, first.epoch))
    second = await store.take_checkpoint("relay")
    assert second == Checkpoint(Position(7, 70), ahead, first.epoch + 1)
    assert not await store.save_checkpoint("relay", Checkpoint(Position(9, 90), frozenset(), first.epoch))
    assert await store.take_checkpoint("relay") == Checkpoint(Position(7, 70), ahead, second.epoch + 1)


async def _open_outboxes(store: EventStore) -> set[str]:
    async with store.pool.acquire() as conn:
        return {r["stream_id"] for r in await conn.fetch("SELECT stream_id FROM open_outboxes")}


async def test_an_outbox_is_open_from_its_first_row_whoever_writes_it(store: EventStore) -> None:
    await store.append("outbox:a", [NewEvent("Cmd", {}), NewEvent("Cmd", {})], expected_version=0)
    await store.append("outbox:a", [NewEvent("Cmd", {})], expected_version=None)
    await store.append("saga-a", [NewEvent("Started", {})], expected_version=0)  # not an outbox
    async with store.pool.acquire() as conn:  # a writer other than the store: the trigger still sees it
        await conn.execute(
            "INSERT INTO events (stream_id, version, event_id, type, data) VALUES ('outbox:b', 1, $1, 'Cmd', '{}')",
            uuid.uuid4(),
        )
    assert await _open_outboxes(store) == {"outbox:a", "outbox:b"}


async def test_the_republish_reads_the_open_outboxes_only_and_drops_those_ended(store: EventStore) -> None:
    for name in ("running", "ended", "closed"):
        await store.append(f"outbox:{name}", [NewEvent("Cmd", {"of": name})], expected_version=0)
    await store.append("outbox:ended", [NewEvent("End", {})], expected_version=None)
    await store.append("outbox:closed", [NewEvent("End", {})], expected_version=None)
    await store.close_outboxes(["outbox:closed"])  # as the relay does once it passed its end
    await running_transactions_ended(store.pool)  # the tail sees a row once older transactions end
    last = (await store.read_outbox_refs(START, limit=10))[-1]
    rows = await store.unfinished_outbox(["End"], last.position)
    assert [(r.stream_id, r.type) for r in rows] == [("outbox:running", "Cmd")]
    # The ended one was open (its end not yet passed by a relay): dropped on the way.
    assert await _open_outboxes(store) == {"outbox:running"}
    # What is not open is not read, ended or not: the history costs nothing.
    await store.close_outboxes(["outbox:running"])
    assert await store.unfinished_outbox(["End"], last.position) == []


async def test_outbox_refs_carry_the_stream_and_type(store: EventStore) -> None:
    await store.append("outbox:a", [NewEvent("Cmd", {}), NewEvent("End", {})], expected_version=0)
    await running_transactions_ended(store.pool)  # another test's open transaction holds the tail back
    refs = await store.read_outbox_refs(START, limit=10)
    assert [(r.stream_id, r.type) for r in refs] == [("outbox:a", "Cmd"), ("outbox:a", "End")]
