"""Losing every PostgreSQL session (a failover, a restart, an idle-session killer) does
not stop the orchestrator: each background loop drops the broken connection, reconnects
with backoff, logs the outage once and counts it, and every saga still ends."""

from __future__ import annotations

import asyncio
import re

from tests.support.harness import Harness, workflow
from tests.support.sessions import terminate_sessions_of
from tests.test_health import free_port, get


def outages_counted(metrics: str) -> dict[str, float]:
    found = re.findall(r'^alphasaga_outages_total\{loop="([^"]+)"\} ([0-9.e+]+)$', metrics, re.MULTILINE)
    return {loop: float(n) for loop, n in found}


async def test_the_orchestrator_rides_out_its_sessions_being_cut_three_times(h: Harness) -> None:
    port = free_port()
    orchestrator = h.orchestrator(
        h.workflows_file(workflow(timeout_s=1.0)), ALPHASAGA_HTTP_PORT=str(port), ALPHASAGA_HTTP_HOST="127.0.0.1"
    )
    sim = h.sim(silent={"reasoning": [1]})  # every saga waits for a timeout: work stays in flight
    await h.ready(orchestrator, sim)
    sagas = await h.start(10)
    database_url = h.settings.database_url or ""
    cut = 0
    for _ in range(3):
        await asyncio.sleep(0.4)
        cut += await terminate_sessions_of(database_url, orchestrator.popen.pid)
        assert orchestrator.popen.poll() is None, orchestrator.text()[-3000:]
    assert cut >= 3, "sessions of the orchestrator were cut"
    states = await h.wait_terminal(sagas, timeout=90)
    assert set(states.values()) == {"COMPLETED"}, states
    assert await h.violations(sagas) == {}
    assert orchestrator.popen.poll() is None, "the orchestrator is still running"
    counted = outages_counted(get(f"http://127.0.0.1:{port}/metrics")[1])
    assert counted.get("relay", 0) >= 1, counted
    outage_lines = [line for line in orchestrator.text().splitlines() if "retrying with backoff" in line]
    assert len(outage_lines) <= 3 * max(1, len(counted)), "one line per outage and loop, not one per try"
    assert len(outage_lines) == sum(counted.values()), (outage_lines, counted)


async def test_a_loop_failing_for_a_reason_that_is_not_an_outage_stops_the_process_with_it(h: Harness) -> None:
    orchestrator = h.orchestrator(h.workflows_file(workflow()))
    await h.ready(orchestrator)
    async with h.store.pool.acquire() as conn:
        await conn.execute("DROP TABLE saga_timers")  # a broken deployment, not a blip
    assert orchestrator.wait_exit(60) == 1
    last = orchestrator.text().strip().splitlines()[-1]
    assert last.startswith("alphasaga-orchestrator: timers failed: UndefinedTableError"), last
