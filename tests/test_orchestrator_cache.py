"""Each orchestrator keeps the sagas it last committed in memory and decides on them
without reading the store. Another orchestrator may have moved a saga on since: the
commit must then refuse the stale decision, even one that writes no event, and the
message must be decided again on the saga as the store holds it."""

from __future__ import annotations

import uuid
from typing import Any

from alphasaga_contracts import saga as sg
from alphasaga_contracts.research import ResearchRequest
from alphasaga_orchestrator import bootstrap
from alphasaga_orchestrator.handling import Orchestrator
from alphasaga_saga.invariants import check_saga
from alphasaga_saga.streams import saga_stream
from alphasaga_shared.config import Settings
from alphasaga_shared.eventstore import EventStore, outbox_stream
from alphasaga_shared.wire import Envelope, envelope_for
from tests.support import replies


def orchestrator(settings: Settings, store: EventStore) -> Orchestrator:
    return bootstrap.orchestrator(store, settings)


def reply(step: str, saga_id: uuid.UUID) -> Envelope:
    message: Any = replies.success(step, saga_id, step, 1)
    return envelope_for(message, correlation_id=str(saga_id))


async def test_a_stale_cached_saga_is_decided_again_on_the_stored_one(settings: Settings, store: EventStore) -> None:
    first, second = orchestrator(settings, store), orchestrator(settings, store)
    saga_id = uuid.uuid4()
    start = sg.StartResearch(saga_id=saga_id, request=ResearchRequest(dataset="sp500"))
    await first.apply(saga_id, envelope_for(start, correlation_id=str(saga_id)))
    assert saga_id in first.repo.cache, "the committed saga is kept"

    # The other orchestrator moves the saga on: reasoning done, codegen commanded.
    await second.apply(saga_id, reply("reasoning", saga_id))
    # The first one still holds the saga waiting for reasoning. On that state the codegen
    # reply means nothing (no event to write); recorded as handled, it would be lost and
    # the saga would wait for codegen forever.
    await first.apply(saga_id, reply("codegen", saga_id))

    saga = (await first.repo.load_many([saga_id]))[saga_id]
    assert saga is not None
    assert saga.completed == ["reasoning", "codegen"]
    assert saga.current_step == "ml"
    events = await store.read_stream(saga_stream(saga_id))
    outbox = await store.read_stream(outbox_stream(str(saga_id)))
    assert check_saga(saga_id, events, outbox, fold=first.repo.mapper.fold) == []


async def test_the_cache_serves_a_whole_saga_without_reading_it(settings: Settings, store: EventStore) -> None:
    only = orchestrator(settings, store)
    reads = 0
    load_many = only.repo.load_many

    async def counting_load_many(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        return await load_many(*args, **kwargs)

    only.repo.load_many = counting_load_many  # type: ignore[method-assign]
    saga_id = uuid.uuid4()
    start = sg.StartResearch(saga_id=saga_id, request=ResearchRequest(dataset="sp500"))
    await only.apply(saga_id, envelope_for(start, correlation_id=str(saga_id)))
    for step in ("reasoning", "codegen", "ml", "backtest"):
        await only.apply(saga_id, reply(step, saga_id))
    assert reads == 1, "only the new saga was looked up in the store"
    saga = (await load_many([saga_id]))[saga_id]
    assert saga is not None and saga.state == "COMPLETED"
    assert saga_id not in only.repo.cache, "a finished saga is not kept"
