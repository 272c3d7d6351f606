"""research v2, a DAG, on real orchestrator and simulated-worker processes over Redis and
PostgreSQL: both ml branches start in one decision, a branch that fails for good rolls
the saga back along the needs, and (``make chaos``) kill -9 of orchestrators and workers
while branches run loses no branch and commands none twice."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from tests.support.harness import Harness, workflow, workflow_v2
from tests.support.helpers import eventually


def steps_of(events: list, kind: str) -> list[str]:
    return [e.data["step"] for e in events if e.type.endswith(kind)]


async def commands_issued_twice(h: Harness) -> int:
    async with h.store.pool.acquire() as conn:
        found: int = await conn.fetchval(
            "SELECT count(*) FROM (SELECT data->>'saga_id', data->>'step', data->>'attempt', type, count(*)"
            " FROM events WHERE stream_id LIKE 'outbox:%' AND type NOT LIKE 'sagas.%'"
            " GROUP BY 1, 2, 3, 4 HAVING count(*) > 1) d"
        )
    return found


async def test_v2_runs_both_ml_branches_from_one_decision_and_completes(h: Harness) -> None:
    o, s = h.orchestrator(h.workflows_file(workflow(), workflow_v2())), h.sim()
    await h.ready(o, s)
    sagas = await h.start(3, version=2)
    assert set((await h.wait_terminal(sagas, timeout=60)).values()) == {"COMPLETED"}
    for saga in sagas:
        events = await h.events(saga)
        assert events[0].data["workflow_version"] == 2
        ml = [e for e in events if e.type.endswith("StepCommanded") and e.data["step"].startswith("ml[")]
        assert sorted(e.data["step"] for e in ml) == ["ml[lightgbm]", "ml[linear]"]
        assert ml[0].metadata["causation_id"] == ml[1].metadata["causation_id"], "both started by codegen's reply"
        assert sorted(steps_of(events, "StepSucceeded")) == sorted(
            ["reasoning", "codegen", "ml[lightgbm]", "ml[linear]", "backtest[lightgbm]", "backtest[linear]", "select"]
        )
    assert await h.violations(sagas) == {}


async def test_a_failed_ml_branch_compensates_the_other_and_the_earlier_steps_in_order(h: Harness) -> None:
    wf = h.workflows_file(workflow_v2(timeout_s=10.0))
    # the lightgbm branch is still in flight (its worker never answers) when the linear one fails for good
    o, s = h.orchestrator(wf), h.sim(fail_always=["ml[linear]"], silent={"ml[lightgbm]": [1]})
    await h.ready(o, s)
    (saga,) = await h.start(version=2)
    assert (await h.wait_terminal([saga], timeout=60))[saga] == "ROLLED_BACK"
    events = await h.events(saga)
    started = next(e.data for e in events if e.type.endswith("CompensationStarted"))
    assert started.get("interrupted") == "ml[lightgbm]" or started.get("in_flight") == ["ml[lightgbm]"]
    assert steps_of(events, "StepCompensated") == ["ml[lightgbm]", "codegen", "reasoning"]
    assert "backtest" not in str(steps_of(events, "StepCommanded"))
    assert await h.violations([saga]) == {}


@pytest.mark.chaos
async def test_kill_9_of_orchestrators_and_workers_while_branches_run(h: Harness) -> None:
    # Timeouts long enough for a restarted worker to reclaim what the killed one held.
    wf = h.workflows_file(workflow_v2(timeout_s=10.0, max_attempts=4))
    delays = {"ml": 0.05, "backtest": 0.02}
    orchestrators = [h.orchestrator(wf, "a"), h.orchestrator(wf, "b")]
    sim = h.sim(fail_rate=0.05, duplicate_rate=0.1, delay_s=delays)
    await h.ready(*orchestrators, sim)
    sagas = await h.start(20, version=2)

    async def branches_running() -> bool:
        for saga in sagas:
            if "ml[" in str(steps_of(await h.events(saga), "StepCommanded")):
                return True
        return False

    await eventually(branches_running, timeout=30)
    rng = random.Random(25)
    for round_ in range(4):
        await asyncio.sleep(rng.uniform(0.3, 1.0))
        victim = round_ % 2
        orchestrators[victim].kill9()
        sim.kill9()
        orchestrators[victim] = h.orchestrator(wf, f"{'ab'[victim]}{round_}")
        sim = h.sim(fail_rate=0.05, duplicate_rate=0.1, delay_s=delays)
        await h.ready(orchestrators[victim], sim)
    states = await h.wait_terminal(sagas, timeout=240)
    print(f"ends: {Counter(states.values())}")
    assert set(states.values()) <= {"COMPLETED", "ROLLED_BACK"}
    assert await h.violations(sagas) == {}, "every branch ended, none was commanded twice, the DAG was kept"
    assert await commands_issued_twice(h) == 0
    for saga, state in states.items():
        if state == "COMPLETED":
            done = steps_of(await h.events(saga), "StepSucceeded")
            assert {"ml[lightgbm]", "ml[linear]", "backtest[lightgbm]", "backtest[linear]"} <= set(done), saga
