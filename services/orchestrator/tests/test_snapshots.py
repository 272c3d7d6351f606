"""Snapshots bound the cost of loading a long saga: the orchestrator's repository reads the
newest snapshot and only the events after it, and what it gets is the saga its whole log
folds to (issue #32; the figures for 100,000 events: ``python -m bench snapshots``)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from alphasaga_orchestrator.repository import SagaRepository
from alphasaga_orchestrator.sagastore import SagaStore
from alphasaga_readmodel.projector import SagaProjector
from alphasaga_readmodel.store import ReadStore
from alphasaga_readmodel.summaries import summarise
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


async def project_until(projector: SagaProjector, reads: ReadStore, saga_id: uuid.UUID, version: int) -> None:
    """Project until the saga's row is at ``version``: the log's readers hold back rows behind
    any transaction still open on the server, which other work on it may keep open a while."""
    for _ in range(600):
        await projector.run_once()
        row = await reads.summary(saga_id)
        if row is not None and row.version >= version:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the projector did not reach version {version} of saga {saga_id}")


async def test_a_projector_that_does_not_hold_a_long_saga_resumes_it_from_its_snapshot(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    sagas, reads = SagaStore(store), ReadStore(store)
    written = await write_long_saga(sagas, SagaRepository(sagas, snapshot_every=SNAPSHOT_EVERY), 1_000, per_commit=37)
    await project_until(SagaProjector(reads, batch=300), reads, written.id, written.version)
    written = await write_long_saga(sagas, SagaRepository(sagas, snapshot_every=0), written.version + 42, saga=written)

    restarted = SagaProjector(reads, batch=300)  # its cache is empty: the saga is missed
    resumed: list[Any] = []
    real = reads.resume_points

    async def spied(conn: Any, saga_ids: Any) -> Any:
        found = await real(conn, saga_ids)
        resumed.extend(found.values())
        return found

    monkeypatch.setattr(reads, "resume_points", spied)
    await project_until(restarted, reads, written.id, written.version)
    assert len(resumed) == 1 and resumed[0].snapshot is not None
    assert 0 < len(resumed[0].rows) < SNAPSHOT_EVERY  # the events after the snapshot, not the saga's 1,042

    everything = await sagas.events_of(written.id)
    expected = summarise(SagaRepository(sagas).mapper.fold(written.id, everything), everything)  # type: ignore[arg-type]
    got = await reads.summary(written.id)
    assert got is not None
    assert (got.version, got.started_at, got.updated_at, got.state, got.steps_completed) == (
        expected.version,
        expected.started_at,
        expected.updated_at,
        expected.state,
        expected.steps_completed,
    )
    assert got.saga_state == json.loads(expected.saga_state)  # read back as JSON, written as its text
