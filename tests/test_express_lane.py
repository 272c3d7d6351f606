"""The express lane (issue #25 §4, docs/decisions/0023) with real processes over real Redis
and PostgreSQL: an orchestrator, a reasoning worker on the real worker runtime
(tests/support/lane_worker.py) and simulated workers for the other kinds. An express
saga's every command travels on the express streams, overtakes normal commands that hold
their lane, and is reclaimed, dead-lettered and deduplicated as a normal one is."""

from __future__ import annotations

import uuid
from typing import Any

from alphasaga_client import AlphaSaga
from alphasaga_contracts import Priority, Service, Streams
from alphasaga_contracts.research import ResearchRequest
from alphasaga_saga.streams import saga_stream
from alphasaga_shared.eventstore import outbox_stream
from tests.support.harness import Harness, workflow
from tests.support.helpers import Proc, eventually

OTHERS = ["codegen", "ml", "backtest"]
HOLDS, CRASHES, ANSWERS = 1, 2, 7  # the lane worker's seeds


def lane_worker(h: Harness, name: str, **env: str) -> Proc:
    proc = Proc.module("tests.support.lane_worker", {**h.env, **env}, h.tmp / f"{name}.log")
    h.procs.append(proc)
    return proc


async def submit(h: Harness, seed: int, priority: Priority = Priority.NORMAL) -> uuid.UUID:
    async with AlphaSaga(h.settings) as client:
        request = ResearchRequest(dataset="sp500", seed=seed)
        return (await client.submit(request, priority=priority)).saga_id


async def settled(h: Harness, stream: str, group: str) -> None:
    """Wait until ``group`` has read and acked everything on ``stream``."""

    async def done() -> bool:
        (info,) = [g for g in await h.redis.xinfo_groups(stream) if g["name"] in (group, group.encode())]
        return int(info["lag"] or 0) == 0 and int(info["pending"]) == 0

    await eventually(done, timeout=30)


def runs(proc: Proc, saga: uuid.UUID) -> list[str]:
    return [line for line in proc.text().splitlines() if line.startswith(f"ran {saga} ")]


async def test_an_express_saga_overtakes_normal_ones_holding_its_lane_and_is_recorded_and_deduplicated(
    h: Harness,
) -> None:
    streams: Streams = h.settings.streams
    o = h.orchestrator(h.workflows_file(workflow(timeout_s=300)))
    worker, sims = lane_worker(h, "reasoning", LANE_HANG="1"), h.sim(only=OTHERS)
    await h.ready(o, worker, sims)
    normal = [await submit(h, HOLDS) for _ in range(3)]
    await eventually(lambda: _ran_any(worker, normal), timeout=30)  # one holds the normal lane; two wait
    express = await submit(h, ANSWERS, Priority.EXPRESS)
    assert (await h.wait_terminal([express]))[express] == "COMPLETED"
    assert set((await h.states(normal)).values()) == {"RUNNING"}
    assert sum(len(runs(worker, s)) for s in normal) == 1, "the normal lane still runs one at a time"

    started = (await h.store.read_stream(saga_stream(express)))[0]
    assert started.data["priority"] == "express", "the lane is in the saga's first event"
    sent = [r for r in await h.store.read_stream(outbox_stream(str(express))) if not r.type.startswith("sagas.")]
    assert {r.metadata["stream"] for r in sent} == {
        streams.lane(streams.commands(k), Priority.EXPRESS) for k in ["reasoning", *OTHERS]
    }
    assert await h.violations([express, *normal]) == {}, "the checker holds each saga to its lane"
    lifecycle = await h.redis.xrange(streams.sagas)
    assert any(b"express" in f[b"body"] and str(express).encode() in f[b"body"] for _, f in lifecycle)

    # The same command again, on either lane, is a duplicate: the guard is the service's.
    reasoning = streams.commands(Service.REASONING)
    (command,) = [
        f
        for _, f in await h.redis.xrange(streams.lane(reasoning, Priority.EXPRESS))
        if str(express).encode() in f[b"body"]
    ]
    for lane in Streams.lanes(reasoning):
        await h.redis.xadd(lane, command)
    await settled(h, streams.lane(reasoning, Priority.EXPRESS), "reasoning")
    assert len(runs(worker, express)) == 1
    replies = await h.redis.xrange(streams.lane(streams.events(Service.REASONING), Priority.EXPRESS))
    assert len(replies) == 1, "a duplicate is acked, not answered again"


async def _ran_any(worker: Proc, sagas: list[uuid.UUID]) -> bool:
    return any(runs(worker, s) for s in sagas)


async def test_an_express_command_left_by_a_killed_worker_is_reclaimed_from_the_express_lane(h: Harness) -> None:
    o = h.orchestrator(h.workflows_file(workflow(timeout_s=300)))
    first, sims = lane_worker(h, "first", LANE_HANG="1"), h.sim(only=OTHERS)
    await h.ready(o, first, sims)
    express = await submit(h, HOLDS, Priority.EXPRESS)
    await eventually(lambda: _ran_any(first, [express]), timeout=30)
    first.kill9()
    second = lane_worker(h, "second")
    assert (await h.wait_terminal([express]))[express] == "COMPLETED"
    assert len(runs(second, express)) == 1, "taken over once, by the live worker"
    commanded = [e.data["attempt"] for e in await h.events(express) if e.type.endswith("StepCommanded")]
    assert commanded[0] == 1 and len(commanded) == 4, "the same attempt, reclaimed: no timeout, no retry"
    assert await h.violations([express]) == {}


async def test_an_express_command_that_keeps_failing_is_dead_lettered_from_its_lane_and_the_saga_told(
    h: Harness,
) -> None:
    streams: Streams = h.settings.streams
    o = h.orchestrator(h.workflows_file(workflow(timeout_s=300, max_attempts=1)))
    worker = lane_worker(h, "reasoning", ALPHASAGA_DELIVERY_CAP="2", ALPHASAGA_RECLAIM_IDLE_MS="300")
    await h.ready(o, worker)
    express = await submit(h, CRASHES, Priority.EXPRESS)
    assert (await h.wait_terminal([express]))[express] == "ROLLED_BACK"
    lane = streams.lane(streams.commands(Service.REASONING), Priority.EXPRESS)
    dead: list[Any] = await h.redis.xrange(streams.dead_letters(lane))
    assert len(dead) == 1 and dead[0][1][b"dlq_source_stream"] == lane.encode()
    assert await h.redis.xlen(streams.dead_letters(streams.commands(Service.REASONING))) == 0
    failed = [e.data for e in await h.events(express) if e.type.endswith("StepFailed")]
    assert len(failed) == 1 and "dead letter" in failed[0]["error"], "told at once, not at the timeout"
    assert len(runs(worker, express)) == 2, "delivered up to the cap"
    assert await h.violations([express]) == {}
