"""Memory bounded by settings, not by history (issue #32, ``make soak``): one orchestrator
(with its relay and projector) and instant simulated workers run 20,000 sagas in bursts
of 1,000, and the orchestrator's resident memory must level off once its caches can hold
no more: finished sagas are not kept, so what they hold is bounded by the sagas in
flight. Before, the projector kept 20,000 finished sagas and RSS grew by about 15 MB per
1,000 sagas (issue #32)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from alphasaga_client import AlphaSaga
from alphasaga_contracts.research import ResearchRequest
from tests.support.harness import Harness, workflow

pytestmark = pytest.mark.slow

BURSTS = 20
BURST = 1_000
# Bursts before the plateau: the interpreter's arenas, the pools and the caches filling
# with the sagas of one burst in flight.
WARM_UP = 5
# Allowed rise after the warm-up, over 15,000 more sagas: allocator noise and fragmentation,
# a twentieth of what history cost before (15 MB per 1,000 sagas).
ALLOWED_RISE_MB = 25.0


def rss_mb(pid: int) -> float:
    with Path(f"/proc/{pid}/status").open() as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


@pytest.mark.timeout(3600)
async def test_20000_sagas_leave_the_orchestrators_memory_flat(h: Harness) -> None:
    orchestrator = h.orchestrator(h.workflows_file(workflow(timeout_s=60.0)), "memory")
    sim = h.sim()
    await h.ready(orchestrator, sim)
    pid = orchestrator.popen.pid
    readings: list[float] = []
    async with AlphaSaga(h.settings) as client:
        for n in range(BURSTS):
            began = time.monotonic()
            submitted = await client.submit_many([ResearchRequest(dataset="sp500")] * BURST)
            sagas: list[uuid.UUID] = [s.saga_id for s in submitted]
            states = await h.wait_terminal(sagas, timeout=600)
            assert set(states.values()) == {"COMPLETED"}
            took = time.monotonic() - began  # printed for the record, never asserted
            await asyncio.sleep(1.0)  # the projector's last pass over the burst
            readings.append(rss_mb(pid))
            print(
                f"after {(n + 1) * BURST:>6,} sagas: RSS {readings[-1]:.1f} MB, {BURST / took:.0f} sagas/s", flush=True
            )
    plateau = readings[WARM_UP - 1]
    rise = max(readings[WARM_UP:]) - plateau
    assert rise <= ALLOWED_RISE_MB, (
        f"the orchestrator's RSS kept growing with history: {plateau:.1f} MB after {WARM_UP * BURST:,} sagas,"
        f" up to {max(readings[WARM_UP:]):.1f} MB later (readings {[round(r) for r in readings]})"
    )
