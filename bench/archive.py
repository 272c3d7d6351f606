"""Moving finished sagas to the archive (issue #32, docs/decisions/0018): ``alphasaga
archive run``'s path (the read model's due sagas, the manifests, the copy, the DELETE the
trigger checks row by row, the digests again, the read model's marks), beside the floor in
the same run: the same rows copied to a table without any check and deleted from one
without a trigger."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from alphasaga_client.api import AlphaSaga
from alphasaga_contracts import Streams
from alphasaga_readmodel.projector import SagaProjector
from alphasaga_readmodel.store import ReadStore
from alphasaga_shared.eventstore import EventStore
from cli.tests.test_projection import seed

from .common import Servers, bench_settings, cleanup

SAGAS = 2_000


async def measure(s: Servers, sagas: int = SAGAS) -> dict[str, Any]:
    settings = bench_settings(s)
    assert settings.database_url
    store = await EventStore.connect(settings.database_url, settings.database_schema)
    try:
        await seed(store, Streams(settings.namespace), sagas)
        await SagaProjector(ReadStore(store)).catch_up()
        rows = int(await store.pool.fetchval("SELECT count(*) FROM events"))
        async with store.pool.acquire() as conn:  # the floor: the same rows, no check, no trigger
            await conn.execute("CREATE TABLE floor_events AS SELECT * FROM events WITH NO DATA")
            await conn.execute("CREATE TABLE floor_source AS SELECT * FROM events")
            started = time.perf_counter()
            async with conn.transaction():
                await conn.execute("INSERT INTO floor_events SELECT * FROM floor_source")
                await conn.execute("DELETE FROM floor_source")
            floor_s = time.perf_counter() - started
        async with AlphaSaga(settings) as client:
            started = time.perf_counter()
            run = await client.archive_run(hot_days=1e-9, now=dt.datetime.now(dt.UTC))
            archive_s = time.perf_counter() - started
            started = time.perf_counter()
            check = await client.archive_verify()
            verify_s = time.perf_counter() - started
        assert not check.problems
        return {
            "sagas": sagas,
            "moved": run.sagas,
            "rows": rows,
            "archived_rows": run.events + run.outbox,
            "batch": settings.archive_batch,
            "archive_s": archive_s,
            "verify_s": verify_s,
            "floor_s": floor_s,
        }
    finally:
        await store.close()
        await cleanup(s, settings.namespace, settings.database_schema)


def markdown(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"## Archiving {r['moved']:,} finished sagas of {r['sagas']:,} ({r['archived_rows']:,} rows; issue #32)\n",
            "| what | time | rows/s |",
            "|---|---:|---:|",
            f"| `archive run` ({r['batch']} sagas per transaction) | {r['archive_s']:.2f} s"
            f" | {r['archived_rows'] / r['archive_s']:,.0f} |",
            f"| `archive verify` (every manifest) | {r['verify_s']:.2f} s"
            f" | {r['archived_rows'] / r['verify_s']:,.0f} |",
            f"| floor: all {r['rows']:,} rows copied and deleted, no check, one statement each | {r['floor_s']:.2f} s"
            f" | {r['rows'] / r['floor_s']:,.0f} |",
            "",
        ]
    )
