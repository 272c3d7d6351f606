"""The orchestrator as real processes over real Redis and PostgreSQL, with simulated
workers (tests/support/sim_workers.py) so that failures, silences and duplicates can be
injected. Chaos: kill -9 at random moments, two orchestrators at once."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from alphasaga_contracts import Service
from alphasaga_contracts import saga as sg
from alphasaga_shared.wire import encode, envelope_for
from tests.support.harness import Harness, workflow
from tests.support.helpers import eventually

STORY = ["Started"] + ["StepCommanded", "StepSucceeded"] * 4 + ["Completed"]


async def test_happy_path_reads_like_a_story(h: Harness) -> None:
    o, s = h.orchestrator(h.workflows_file(workflow())), h.sim()
    await h.ready(o, s)
    (saga,) = await h.start()
    assert (await h.wait_terminal([saga]))[saga] == "COMPLETED"
    assert await h.kinds(saga) == STORY
    steps = [e.data["step"] for e in await h.events(saga) if e.type.endswith("StepCommanded")]
    assert steps == ["reasoning", "codegen", "ml", "backtest"]
    assert await h.violations([saga]) == {}
    async with h.store.pool.acquire() as conn:  # one saga's commits ran on the commit pool
        queries = await conn.fetch(
            "SELECT query FROM pg_stat_activity WHERE application_name LIKE 'alphasaga-orchestrator-commits pid=%'"
        )
    assert any("WITH guard AS" in r["query"] for r in queries), queries


async def test_ml_failure_compensates_codegen_then_reasoning_and_never_commands_backtest(h: Harness) -> None:
    o, s = h.orchestrator(h.workflows_file(workflow())), h.sim(fail_always=["ml"])
    await h.ready(o, s)
    (saga,) = await h.start()
    assert (await h.wait_terminal([saga]))[saga] == "ROLLED_BACK"
    events = await h.events(saga)
    assert [e.data["step"] for e in events if e.type.endswith("StepCompensated")] == ["codegen", "reasoning"]
    assert not any(e.data.get("step") == "backtest" for e in events)
    assert await h.redis.xlen(h.settings.streams.commands(Service.BACKTEST)) == 0
    assert await h.violations([saga]) == {}


async def test_a_step_that_times_out_twice_then_succeeds_completes_with_three_attempts(h: Harness) -> None:
    o = h.orchestrator(h.workflows_file(workflow(timeout_s=1.0)))
    s = h.sim(silent={"reasoning": [1, 2]})
    await h.ready(o, s)
    (saga,) = await h.start()
    assert (await h.wait_terminal([saga], timeout=30))[saga] == "COMPLETED"
    events = await h.events(saga)
    reasoning = [
        e.data["attempt"] for e in events if e.type.endswith("StepCommanded") and e.data["step"] == "reasoning"
    ]
    assert reasoning == [1, 2, 3]
    assert Counter(e.type.rsplit(".", 1)[-1] for e in events)["StepTimedOut"] == 2
    assert await h.violations([saga]) == {}


async def test_a_compensation_that_always_fails_ends_compensation_failed_and_nothing_else_runs(h: Harness) -> None:
    o = h.orchestrator(h.workflows_file(workflow(compensation_attempts=3)))
    s = h.sim(fail_always=["ml"], compensation_fail=["codegen"])
    await h.ready(o, s)
    (saga,) = await h.start()
    assert (await h.wait_terminal([saga]))[saga] == "COMPENSATION_FAILED"
    events = await h.events(saga)
    attempts = [e.data["attempt"] for e in events if e.type.endswith("CompensationCommanded")]
    assert attempts == [1, 2, 3], "retried, then given up"
    assert not any(e.type.endswith("CompensationCommanded") and e.data["step"] == "reasoning" for e in events)
    await asyncio.sleep(1.0)
    assert len(await h.events(saga)) == len(events), "nothing happens after the terminal state"
    assert await h.violations([saga]) == {}


async def test_cancel_in_the_ml_step_compensates_ml_codegen_and_reasoning(h: Harness) -> None:
    o = h.orchestrator(h.workflows_file(workflow(overrides={"ml": {"timeout_s": 60}})))
    s = h.sim(silent={"ml": [0]})
    await h.ready(o, s)
    (saga,) = await h.start()

    async def in_ml() -> bool:
        return any(e.type.endswith("StepCommanded") and e.data["step"] == "ml" for e in await h.events(saga))

    await eventually(in_ml, timeout=20)
    cancel = sg.CancelSaga(saga_id=saga, reason="changed my mind")
    await h.redis.xadd(
        h.settings.streams.commands(Service.ORCHESTRATOR), encode(envelope_for(cancel, correlation_id=str(saga)))
    )  # type: ignore[arg-type]
    assert (await h.wait_terminal([saga]))[saga] == "ROLLED_BACK"
    events = await h.events(saga)
    # ml's attempt was in flight (it may yet finish), so it is undone too, first.
    assert [e.data["step"] for e in events if e.type.endswith("StepCompensated")] == ["ml", "codegen", "reasoning"]
    assert "cancelled: changed my mind" in events[-1].data.get("reason", "") or any(
        "changed my mind" in str(e.data) for e in events
    )
    assert await h.violations([saga]) == {}


async def test_kill_9_with_a_pending_deadline_fires_the_timeout_once_after_restart(h: Harness) -> None:
    wf = h.workflows_file(workflow(timeout_s=2.0))
    o, s = h.orchestrator(wf), h.sim(silent={"reasoning": [1]})
    await h.ready(o, s)
    (saga,) = await h.start()

    async def commanded() -> bool:
        return "StepCommanded" in await h.kinds(saga)

    await eventually(commanded, timeout=20)
    o.kill9()
    await asyncio.sleep(3.0)  # the deadline passes while no orchestrator runs
    assert "StepTimedOut" not in await h.kinds(saga)
    restarted = h.orchestrator(wf)
    await h.ready(restarted)
    assert (await h.wait_terminal([saga], timeout=30))[saga] == "COMPLETED"
    assert Counter(await h.kinds(saga))["StepTimedOut"] == 1
    assert await h.violations([saga]) == {}


async def test_two_orchestrators_300_sagas_with_failures_and_duplicates(h: Harness) -> None:
    wf = h.workflows_file(workflow(timeout_s=5.0, max_attempts=4))
    procs = [h.orchestrator(wf, "a"), h.orchestrator(wf, "b"), h.sim(fail_rate=0.1, duplicate_rate=0.2)]
    await h.ready(*procs)
    sagas = await h.start(300)
    states = await h.wait_terminal(sagas, timeout=180)
    print(Counter(states.values()))
    assert set(states.values()) <= {"COMPLETED", "ROLLED_BACK"}
    assert await h.violations(sagas) == {}
    async with h.store.pool.acquire() as conn:
        dup = await conn.fetchval(
            "SELECT count(*) FROM (SELECT data->>'saga_id', data->>'step', data->>'attempt', type, count(*)"
            " FROM events WHERE stream_id LIKE 'outbox:%' AND type NOT LIKE 'sagas.%'"
            " GROUP BY 1, 2, 3, 4 HAVING count(*) > 1) d"
        )
    assert dup == 0, "a step command was issued twice for the same attempt"
    logs = "".join(p.text() for p in procs[:2])
    assert "alphasaga-orchestrator: ready" in logs


async def test_kill_9_the_orchestrator_at_random_moments_during_200_sagas(h_on: Harness) -> None:
    h = h_on  # on Redis and on JetStream
    wf = h.workflows_file(workflow(timeout_s=3.0, max_attempts=4))
    s = h.sim(fail_rate=0.05, duplicate_rate=0.1)
    o = h.orchestrator(wf)
    await h.ready(s, o)
    sagas = await h.start(200)
    rng = random.Random(7)
    kills = 0
    for _ in range(6):
        await asyncio.sleep(rng.uniform(0.3, 1.2))
        o.kill9()
        kills += 1
        o = h.orchestrator(wf)
        await h.ready(o)
    states = await h.wait_terminal(sagas, timeout=180)
    assert kills == 6
    assert set(states.values()) <= {"COMPLETED", "ROLLED_BACK"}
    assert await h.violations(sagas) == {}


async def test_a_saga_started_on_v1_finishes_on_v1_after_v2_is_deployed(h: Harness) -> None:
    # v1 retries a timed-out ml step; v2 does not. The sim never answers ml's first attempt,
    # so the version a saga runs on decides its outcome.
    v1 = workflow(1, timeout_s=2.0)
    v2 = workflow(2, timeout_s=2.0, overrides={"ml": {"retry": {"max_attempts": 1}}})
    s = h.sim(silent={"ml": [1]})
    o = h.orchestrator(h.workflows_file(v1))
    await h.ready(s, o)
    (old,) = await h.start()

    async def in_ml() -> bool:
        return any(e.type.endswith("StepCommanded") and e.data["step"] == "ml" for e in await h.events(old))

    await eventually(in_ml, timeout=20)
    o.stop()
    o = h.orchestrator(h.workflows_file(v1, v2))  # v2 deployed; v1 kept for sagas still running
    await h.ready(o)
    (new,) = await h.start()
    states = await h.wait_terminal([old, new], timeout=30)
    assert states == {old: "COMPLETED", new: "ROLLED_BACK"}
    old_events, new_events = await h.events(old), await h.events(new)
    assert old_events[0].data["workflow_version"] == 1
    assert new_events[0].data["workflow_version"] == 2
    assert [e.data["attempt"] for e in old_events if e.type.endswith("StepCommanded") and e.data["step"] == "ml"] == [
        1,
        2,
    ]
    assert "gave up after 1 attempts" in new_events[-1].data.get("reason", "") or any(
        "gave up after 1 attempts" in str(e.data) for e in new_events
    )
    assert await h.violations([old, new]) == {}
