"""The archive (migration 0011, ``eventstore.archive``) on the real PostgreSQL: a finished
saga's two streams leave the hot table whole and unchanged, with a manifest that checks
them; every other way rows could leave ``events`` or change in the archive is refused."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import pytest

from alphasaga_shared.eventstore import EventStore, NewEvent, outbox_stream
from alphasaga_shared.eventstore.archive import Archive, ArchiveMismatch

ENDED = ["Saga.Completed"]
LATER = dt.datetime(2999, 1, 1, tzinfo=dt.UTC)


async def saga(store: EventStore, *, ended: bool = True, n: int = 3) -> uuid.UUID:
    saga_id = uuid.uuid4()
    steps = [NewEvent("Saga.Started", {"i": 0, "text": "é\t\n"})]
    steps += [NewEvent("Saga.StepCompleted", {"i": i, "nested": {"a": [1, 2.5, None]}}) for i in range(1, n - 1)]
    steps.append(NewEvent("Saga.Completed" if ended else "Saga.StepCommanded", {"i": n}, {"trace": "x"}))
    await store.append(f"saga-{saga_id}", steps, expected_version=0)
    await store.append(outbox_stream(str(saga_id)), [NewEvent("ml.TrainModel", {"m": 1})], expected_version=0)
    return saga_id


async def hot_rows(store: EventStore, saga_id: uuid.UUID) -> list[object]:
    return [*await store.read_stream(f"saga-{saga_id}"), *await store.read_stream(outbox_stream(str(saga_id)))]


async def archived_rows(archive: Archive, saga_id: uuid.UUID) -> list[object]:
    return [
        *await archive.read_stream(f"saga-{saga_id}"),
        *await archive.read_stream(outbox_stream(str(saga_id))),
    ]


async def move(store: EventStore, saga_ids: list[uuid.UUID], before: dt.datetime = LATER) -> list[uuid.UUID]:
    async with store.transaction() as conn:
        moved = await Archive(store).move(conn, saga_ids, ended=ENDED, before=before)
    return [m.saga_id for m in moved]


async def test_a_finished_saga_moves_whole_and_unchanged_and_verifies(store: EventStore) -> None:
    done, running, other = await saga(store), await saga(store, ended=False), await saga(store)
    before = await hot_rows(store, done)
    assert await move(store, [done, running]) == [done]
    archive = Archive(store)
    assert await hot_rows(store, done) == []
    assert await archived_rows(archive, done) == before  # every column, positions and times too
    assert len(await hot_rows(store, running)) == 4 and len(await hot_rows(store, other)) == 4
    manifest = await archive.manifest(done)
    assert manifest is not None and (manifest.events, manifest.outbox) == (3, 1)
    assert await archive.verify([manifest]) == []
    totals = await archive.totals()
    assert (totals.sagas, totals.events, totals.outbox) == (1, 3, 1)


async def test_a_saga_that_ended_after_the_cut_stays_hot(store: EventStore) -> None:
    saga_id = await saga(store)
    assert await move(store, [saga_id], before=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)) == []
    assert len(await hot_rows(store, saga_id)) == 4


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET type = 'changed'",
        "DELETE FROM events",
        "DELETE FROM events WHERE false",
        "TRUNCATE events",
        "UPDATE archived_events SET type = 'changed'",
        "DELETE FROM archived_events",
        "TRUNCATE archived_events",
        "UPDATE archive_manifests SET events = 1",
        "DELETE FROM archive_manifests",
        "TRUNCATE archive_manifests",
    ],
)
async def test_plain_changes_are_still_refused_beside_the_archive(store: EventStore, statement: str) -> None:
    await move(store, [await saga(store)])
    await saga(store)
    async with store.pool.acquire() as conn:
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await conn.execute(statement)


async def test_a_delete_of_rows_copied_by_hand_but_not_whole_is_refused(store: EventStore) -> None:
    saga_id = await saga(store)
    stream = f"saga-{saga_id}"
    async with store.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO archive_manifests (saga_id, events, outbox, sha256, finished_at)"
            " VALUES ($1, 1, 0, repeat('0', 64), now())",
            saga_id,
        )
        await conn.execute("INSERT INTO archived_events SELECT * FROM events WHERE stream_id = $1", stream)
        with pytest.raises(asyncpg.PostgresError, match="whole"):
            await conn.execute("DELETE FROM events WHERE stream_id = $1 AND version = 1", stream)
        # A row whose copy differs is refused too.
        other = await saga(store)
        await conn.execute(
            "INSERT INTO archived_events SELECT global_position, stream_id, version, event_id, 'forged', data,"
            " metadata, transaction_id, recorded_at FROM events WHERE stream_id = $1",
            f"saga-{other}",
        )
        with pytest.raises(asyncpg.PostgresError, match="identical copy"):
            await conn.execute("DELETE FROM events WHERE stream_id = $1", f"saga-{other}")
    assert len(await hot_rows(store, saga_id)) == 4 and len(await hot_rows(store, other)) == 4


async def test_a_copy_changed_behind_the_triggers_fails_verification(store: EventStore) -> None:
    saga_id = await saga(store)
    await move(store, [saga_id])
    archive = Archive(store)
    manifest = await archive.manifest(saga_id)
    assert manifest is not None
    async with store.pool.acquire() as conn:  # as the tables' owner could: the trigger off
        await conn.execute("ALTER TABLE archived_events DISABLE TRIGGER archived_events_append_only")
        await conn.execute(
            "UPDATE archived_events SET data = '{\"i\": 99}' WHERE stream_id = $1 AND version = 2", f"saga-{saga_id}"
        )
    problems = await archive.verify([manifest])
    assert len(problems) == 1 and "digest" in problems[0]


async def test_a_move_whose_copy_differs_is_rolled_back(store: EventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    saga_id = await saga(store)
    archive = Archive(store)
    real = archive._summarise

    async def skewed(conn: object, saga_ids: list[uuid.UUID], table: str) -> list[object]:
        found = await real(conn, saga_ids, table)  # type: ignore[arg-type]
        if table == "archived_events":
            found = [type(m)(m.saga_id, m.events + 1, m.outbox, m.sha256, m.finished_at) for m in found]
        return found  # type: ignore[return-value]

    monkeypatch.setattr(archive, "_summarise", skewed)
    with pytest.raises(ArchiveMismatch):
        async with store.transaction() as conn:
            await archive.move(conn, [saga_id], ended=ENDED, before=LATER)
    assert len(await hot_rows(store, saga_id)) == 4
    assert await archive.manifest(saga_id) is None
