"""Snapshots bound the cost of loading a long saga: the orchestrator's repository reads the
newest snapshot and only the events after it, and what it gets is the saga its whole log
folds to (issue #32; the figures for 100,000 events: ``python -m bench snapshots``)."""

from __future__ import annotations

from alphasaga_orchestrator.repository import SagaRepository
from alphasaga_orchestrator.sagastore import SagaStore
from alphasaga_saga.aggregate import state_of
from alphasaga_shared.eventstore import EventStore
from tests.support.long_saga import write_long_saga

SNAPSHOT_EVERY = 100


async def test_a_long_saga_loads_from_its_snapshot_to_the_state_its_whole_log_folds_to(store: EventStore) -> None:
    sagas = SagaStore(store)
    repo = SagaRepository(sagas, snapshot_every=SNAPSHOT_EVERY)
    written = await write_long_saga(sagas, repo, 3_000, per_commit=37)
    # The orchestrator's last few commits since its newest snapshot:
    written = await write_long_saga(sagas, SagaRepository(sagas, snapshot_every=0), written.version + 42, saga=written)

    rows = await sagas.load_rows([written.id], {})
    assert rows[0].snapshot and not any(r.snapshot for r in rows[1:])
    after = [r.version for r in rows[1:]]
    assert after == list(range(rows[0].version + 1, written.version + 1))  # only the tail, in order
    assert 0 < len(after) < SNAPSHOT_EVERY  # bounded by the snapshot interval, not by the saga's length

    loaded = await repo.load(written.id)
    everything = await sagas.events_of(written.id)
    folded = repo.mapper.fold(written.id, everything)
    assert loaded is not None and folded is not None and len(everything) == written.version
    assert loaded.version == folded.version == written.version
    assert state_of(loaded) == state_of(folded) == state_of(written)
    assert loaded.context == folded.context == written.context  # state_of leaves the context out


async def test_without_a_snapshot_the_whole_log_is_folded_to_the_same_saga(store: EventStore) -> None:
    sagas = SagaStore(store)
    written = await write_long_saga(sagas, SagaRepository(sagas, snapshot_every=0), 500, per_commit=37)
    rows = await sagas.load_rows([written.id], {})
    assert not any(r.snapshot for r in rows) and len(rows) == written.version
    loaded = await SagaRepository(sagas).load(written.id)
    assert loaded is not None and state_of(loaded) == state_of(written)
