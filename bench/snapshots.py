"""Loading a long saga (issue #32): a campaign-shaped saga of 100,000 events
(``tests/support/long_saga.py``), loaded by the orchestrator's repository from its newest
snapshot and the events after it, and, in the same run, from its whole log (the snapshot
row removed): the fetch and the fold of every event. Beside them, the floor: fetching the
whole log without folding it. And the saga list's projector, restarted (its cache empty),
given the saga's newest event: resumed from the snapshot, then with none."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from alphasaga_orchestrator.repository import SagaRepository
from alphasaga_orchestrator.sagastore import SagaStore
from alphasaga_readmodel.projector import SagaProjector
from alphasaga_readmodel.store import ReadStore
from alphasaga_saga.aggregate import state_of
from alphasaga_shared.eventstore import EventStore
from tests.support.long_saga import write_long_saga

from .common import Servers, bench_settings, cleanup

EVENTS = 100_000
TAIL = 60  # events committed since the newest snapshot (the orchestrator snapshots every 100)
ROUNDS = 5


async def _timed(work: Callable[[], Awaitable[Any]], rounds: int) -> float:
    """Median seconds of ``rounds`` runs of ``work``, after one unmeasured run."""
    await work()
    runs = []
    for _ in range(rounds):
        started = time.perf_counter()
        await work()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


async def measure(s: Servers, events: int = EVENTS, rounds: int = ROUNDS) -> dict[str, Any]:
    settings = bench_settings(s)
    assert settings.database_url
    store = await EventStore.connect(settings.database_url, settings.database_schema)
    try:
        sagas = SagaStore(store)
        repo = SagaRepository(sagas, snapshot_every=100)
        started = time.perf_counter()
        saga = await write_long_saga(sagas, repo, events - TAIL)
        saga = await write_long_saga(sagas, SagaRepository(sagas, snapshot_every=0), events, saga=saga)
        write_s = time.perf_counter() - started
        snap = await sagas.snapshot(saga.id)
        assert snap is not None
        loaded = await repo.load(saga.id)
        assert loaded is not None and state_of(loaded) == state_of(saga)
        newest = (await sagas.events_of(saga.id, after_version=saga.version - 1))[-1]

        async def project() -> None:
            """A restarted projector (an empty cache) given the saga's newest event: its pass's
            fold alone, without waiting for the log's readers (other work on the server holds
            them back)."""
            async with store.transaction() as conn:
                await SagaProjector(ReadStore(store))._project(conn, {saga.id: [newest]})

        with_snapshot = await _timed(lambda: repo.load(saga.id), rounds)
        projected_with = await _timed(project, rounds)
        fetch_only = await _timed(lambda: sagas.events_of(saga.id), max(1, rounds // 2))
        async with store.pool.acquire() as conn:
            await conn.execute("DELETE FROM snapshots WHERE stream_id = $1", snap.stream_id)
        folded = await repo.load(saga.id)
        assert folded is not None and state_of(folded) == state_of(saga)
        without = await _timed(lambda: repo.load(saga.id), max(1, rounds // 2))
        projected_without = await _timed(project, max(1, rounds // 2))
        return {
            "events": saga.version,
            "after_snapshot": saga.version - snap.version,
            "snapshot_bytes": len(snap.state.encode()),
            "write_s": write_s,
            "with_snapshot_s": with_snapshot,
            "without_snapshot_s": without,
            "fetch_only_s": fetch_only,
            "projected_with_s": projected_with,
            "projected_without_s": projected_without,
        }
    finally:
        await store.close()
        await cleanup(s, settings.namespace, settings.database_schema)


def markdown(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"## Loading a saga of {r['events']:,} events (issue #32; medians, one process)\n",
            "| load | time | ratio to the whole log |",
            "|---|---:|---:|",
            f"| from its snapshot and the {r['after_snapshot']} events after it | {r['with_snapshot_s'] * 1000:,.1f} ms"
            f" | {r['with_snapshot_s'] / r['without_snapshot_s']:.2%} |",
            f"| from its whole log (fetch and fold) | {r['without_snapshot_s'] * 1000:,.0f} ms | 100% |",
            f"| fetching the whole log, no fold (floor) | {r['fetch_only_s'] * 1000:,.0f} ms"
            f" | {r['fetch_only_s'] / r['without_snapshot_s']:.0%} |",
            "",
            "| a restarted projector given its newest event | time | ratio to the whole log |",
            "|---|---:|---:|",
            f"| resumed from the snapshot | {r['projected_with_s'] * 1000:,.1f} ms"
            f" | {r['projected_with_s'] / r['projected_without_s']:.2%} |",
            f"| folded from the whole log (no snapshot) | {r['projected_without_s'] * 1000:,.0f} ms | 100% |",
            "",
            f"Snapshot: {r['snapshot_bytes']:,} bytes of JSON. Writing the saga took {r['write_s']:.1f} s"
            f" ({r['events'] / r['write_s']:,.0f} events/s, commits of 1,000 events).",
            "",
        ]
    )
