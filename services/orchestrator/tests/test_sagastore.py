"""The saga store against a real PostgreSQL: the unit of work refuses a duplicate and a
stale decision whole."""

from __future__ import annotations

import uuid

import pytest

from alphasaga_orchestrator.sagastore import CONFLICTS, Changes, SagaStore
from alphasaga_saga.streams import saga_stream
from alphasaga_shared.eventstore import EventStore, NewEvent


def one_event(saga_id: uuid.UUID, message_id: str, expected: int) -> Changes:
    stream = saga_stream(saga_id)
    return Changes(
        inbox=[message_id],
        events=[(stream, expected, 1, NewEvent("E", {"n": expected + 1}))],
        expected={stream: expected},
    )


async def test_the_inbox_refuses_a_duplicate_and_nothing_of_its_commit_is_written(store: EventStore) -> None:
    sagas = SagaStore(store)
    saga_id = uuid.uuid4()
    await sagas.commit(one_event(saga_id, "m-1", 0))
    assert await sagas.handled(["m-1", "m-2"]) == {"m-1"}
    with pytest.raises(CONFLICTS):
        await sagas.commit(one_event(saga_id, "m-1", 1))
    assert [e.version for e in await sagas.events_of(saga_id)] == [1]


async def test_a_decision_on_a_saga_that_moved_on_writes_nothing(store: EventStore) -> None:
    sagas = SagaStore(store)
    saga_id = uuid.uuid4()
    await sagas.commit(one_event(saga_id, "m-1", 0))
    stale = one_event(saga_id, "m-2", 0)  # decided on version 0; the saga is at 1
    stale.events = []  # even a decision that writes no event must not record its input as handled
    with pytest.raises(CONFLICTS):
        await sagas.commit(stale)
    assert await sagas.handled(["m-2"]) == set()
