"""Retention end to end on the real PostgreSQL, through the ``alphasaga`` command: finished
sagas (decided by the real ``decide()``) move to the archive; replaying them from the
archive prints exactly what it printed from the hot table; status, list and a rebuilt list
still show them; the archive verifies; running sagas stay hot."""

from __future__ import annotations

import asyncio
import random
import uuid

from alphasaga_client.api import AlphaSaga
from alphasaga_contracts import Streams
from alphasaga_shared.config import Settings
from alphasaga_shared.eventstore import EventStore
from cli.tests.clirunner import alphasaga, assert_one_line_error
from cli.tests.test_projection import projector, seed
from tests.support.helpers import Proc

__all__ = ["projector"]  # the fixture, shared with the projection's tests

N_SAGAS = 40  # a quarter of them left running by seed()
SAMPLE = 3  # each is six command-line calls; the archive verifies every saga besides
HOT_DAYS = "0.00001"  # under a second: the sagas just seeded are due


async def test_archive_and_replay_from_the_archive_round_trip_a_sample_byte_for_byte(
    env: dict[str, str], store: EventStore, settings: Settings, projector: Proc
) -> None:
    expected = await seed(store, Streams(env["ALPHASAGA_NAMESPACE"]), N_SAGAS)
    listed = alphasaga(env, "list", "--limit", "0", "--json")
    finished = [s["saga_id"] for s in listed.json() if s["state"] != "RUNNING"]
    running = [s["saga_id"] for s in listed.json() if s["state"] == "RUNNING"]
    assert len(finished) == N_SAGAS - expected["RUNNING"]
    sample = random.sample(finished, SAMPLE)
    before = {s: alphasaga(env, "replay", s, "--json").out for s in sample}
    statuses = {s: alphasaga(env, "status", s, "--json").out for s in sample}
    hot = await store.pool.fetchval("SELECT count(*) FROM events")

    refused = alphasaga(env, "archive", "run")  # no policy set: nothing is due, and it says why
    assert_one_line_error(refused, 2, contains="ALPHASAGA_RETENTION_HOT_DAYS")
    await asyncio.sleep(1.0)
    moved = alphasaga(env, "archive", "run", "--hot-days", HOT_DAYS, "--json").json()
    assert moved["sagas"] == len(finished) and moved["skipped"] == []
    left = await store.pool.fetchval("SELECT count(*) FROM events")
    assert left == hot - moved["events"] - moved["outbox"]
    for s in finished:
        gone = await store.pool.fetchval(
            "SELECT count(*) FROM events WHERE stream_id IN ($1, $2)", f"saga-{s}", f"outbox:{s}"
        )
        assert gone == 0
    for s in running[:2]:  # a command-line call each; the count check above covers them all
        assert alphasaga(env, "replay", s, "--from-archive").code != 0  # not archived: still hot

    for s in sample:
        assert alphasaga(env, "replay", s, "--from-archive", "--json").out == before[s]
        assert alphasaga(env, "replay", s, "--json").out == before[s]  # an archived saga reads from the archive
        assert alphasaga(env, "status", s, "--json").out == statuses[s]
    assert alphasaga(env, "status", sample[0][:10], "--json").out == statuses[sample[0]]  # found by a prefix
    assert alphasaga(env, "list", "--limit", "0", "--json").out == listed.out
    async with AlphaSaga(settings) as client:  # what GET /v1/sagas/{id} answers
        detail = await client.detail(uuid.UUID(sample[0]))
    assert detail.attempts and detail.summary.state != "RUNNING"

    assert alphasaga(env, "archive", "verify", "--json").json() == {"sagas": len(finished), "ok": True, "problems": []}
    assert alphasaga(env, "archive", "verify", "--sample", "3", "--json").json()["ok"] is True
    assert alphasaga(env, "archive", "verify", sample[0]).code == 0
    status = alphasaga(env, "archive", "status", "--hot-days", HOT_DAYS, "--json").json()
    assert status["lag_seconds"] == 0 and status["archived"]["sagas"] == len(finished)
    assert alphasaga(env, "archive", "run", "--hot-days", HOT_DAYS, "--json").json()["sagas"] == 0

    # The saga list folded again from the log and the archive is the same list.
    assert alphasaga(env, "projections", "rebuild", "--json").json()["sagas"] == N_SAGAS
    assert alphasaga(env, "list", "--limit", "0", "--json").out == listed.out
    assert alphasaga(env, "archive", "run", "--hot-days", HOT_DAYS, "--json").json()["sagas"] == 0


async def test_archive_lag_is_how_long_the_longest_due_saga_has_waited(
    env: dict[str, str], store: EventStore, projector: Proc
) -> None:
    await seed(store, Streams(env["ALPHASAGA_NAMESPACE"]), 4)
    alphasaga(env, "list", "--json").json()  # the projector has them
    await asyncio.sleep(1.0)
    status = alphasaga(env, "archive", "status", "--hot-days", HOT_DAYS, "--json").json()
    assert status["lag_seconds"] > 0 and status["archived"]["sagas"] == 0
    assert alphasaga(env, "archive", "run", "--hot-days", HOT_DAYS, "--limit", "1", "--json").json()["sagas"] == 1
    assert alphasaga(env, "archive", "status", "--json").json()["hot_days"] is None
