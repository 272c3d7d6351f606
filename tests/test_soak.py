"""Soak (``make soak``, not run by ``make test`` or CI): 2,000 sagas through two
orchestrators with injected failures and duplicate replies, one orchestrator killed
-9 and restarted every few seconds. Every saga must end and pass the invariant checker."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from tests.support.harness import Harness, workflow

pytestmark = pytest.mark.slow


@pytest.mark.timeout(1800)
async def test_soak_2000_sagas_with_chaos(h_on: Harness) -> None:
    h = h_on  # on Redis and on JetStream, behind the same marker
    wf = h.workflows_file(workflow(timeout_s=5.0, max_attempts=4))
    steady = h.orchestrator(wf, "steady")
    victim = h.orchestrator(wf, "victim")
    sim = h.sim(fail_rate=0.1, duplicate_rate=0.2)
    await h.ready(steady, victim, sim)
    sagas = []
    rng = random.Random(11)
    for _ in range(20):
        sagas += await h.start(100)
        await asyncio.sleep(rng.uniform(1.0, 3.0))
        victim.kill9()
        victim = h.orchestrator(wf, "victim")
        await h.ready(victim)
    states = await h.wait_terminal(sagas, timeout=900)
    print(Counter(states.values()))
    assert set(states.values()) <= {"COMPLETED", "ROLLED_BACK"}
    assert await h.violations(sagas) == {}
