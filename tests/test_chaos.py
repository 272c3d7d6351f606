"""Chaos (``make chaos``, not in ``make test``): every PostgreSQL session of two
orchestrators is cut three times while 20 sagas run. No process exits, every saga ends
with its invariants intact, and the relay published no outbox row twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from alphasaga_shared.eventstore import OUTBOX_PREFIX
from tests.support.harness import Harness, workflow
from tests.support.sessions import terminate_sessions_of

pytestmark = pytest.mark.chaos


async def test_cutting_every_session_three_times_during_20_sagas_with_two_orchestrators(h: Harness) -> None:
    wf = h.workflows_file(workflow(timeout_s=1.5, max_attempts=4))
    orchestrators = [h.orchestrator(wf, "a"), h.orchestrator(wf, "b")]
    sim = h.sim(silent={"reasoning": [1]}, fail_rate=0.1, duplicate_rate=0.1)
    await h.ready(*orchestrators, sim)
    sagas = await h.start(20)
    database_url = h.settings.database_url or ""
    cut = 0
    for _ in range(3):
        await asyncio.sleep(1.0)
        for o in orchestrators:
            cut += await terminate_sessions_of(database_url, o.popen.pid)
    states = await h.wait_terminal(sagas, timeout=180)
    print(f"sessions cut: {cut}; ends: {Counter(states.values())}")
    assert all(o.popen.poll() is None for o in orchestrators), "no orchestrator exited"
    assert set(states.values()) <= {"COMPLETED", "ROLLED_BACK"}
    assert await h.violations(sagas) == {}
    await asyncio.sleep(1.0)  # the relay's last publishes

    async with h.store.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT metadata->>'stream' AS stream, metadata->>'message_id' AS message_id FROM events"
            " WHERE stream_id LIKE $1",
            f"{OUTBOX_PREFIX}%",
        )
    published: Counter[str] = Counter()
    for stream in {r["stream"] for r in rows}:
        entries: Any = await h.redis.xrange(stream)
        published.update(fields[b"message_id"].decode() for _, fields in entries)
    twice = [r["message_id"] for r in rows if published[r["message_id"]] > 1]
    never = [r["message_id"] for r in rows if published[r["message_id"]] == 0]
    print(f"outbox rows: {len(rows)}; published twice: {len(twice)}; never: {len(never)}")
    assert never == [], "every committed row reached its stream"
    assert twice == [], "the relay published no row twice"
