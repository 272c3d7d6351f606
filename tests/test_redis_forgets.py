"""Redis forgets (issue #29), each time on a Redis of the test's own (a flush or a kill
must not touch anyone else's streams). The relay learns it from its sentinel and
publishes the unfinished sagas' outbox again, the services make their groups again, and
every saga PostgreSQL recorded ends, long before a step timeout could have saved it.

``make test`` runs the cheapest: a FLUSHDB while three sagas wait on commands only Redis
held. ``make chaos`` runs the four cases of the issue; each prints the time from Redis's
return to the last saga's end (docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from alphasaga_cli.stack import Stack
from alphasaga_client import AlphaSaga
from alphasaga_contracts import KINDS, Service
from alphasaga_contracts.research import ResearchRequest
from alphasaga_saga.streams import saga_stream
from alphasaga_shared.sentinel import sentinel_key
from conftest import Servers
from tests.support.harness import Harness, workflow
from tests.support.helpers import eventually
from tests.support.own_redis import OwnRedis

# The step timeout is far past every wait below: a saga that ends did so by the recovery.
STEP_TIMEOUT_S = 900.0
# How long the sagas may take to end: far less than any step timeout (the real services run
# the built-in workflow's 600 s), so that an end is the recovery's doing, and long enough for
# twenty sagas' work on a loaded shared machine. The issue asks for 60 s after Redis's
# return: each case prints its time against it, for docs/benchmarks.md.
WAIT_S = 300.0
ISSUE_TARGET_S = 60.0
# Simulated work per command: twenty sagas take a few seconds per step, so that a
# disruption finds them in flight.
SIM_DELAY_S = 0.1


@pytest.fixture
def own_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path / "redis", aof=getattr(request, "param", False))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def servers(servers: Servers, own_redis: OwnRedis) -> Servers:
    """The session's PostgreSQL, with this test's own Redis."""
    return Servers(own_redis.url, servers.database_url)


async def running(h: Harness, sagas: list[uuid.UUID]) -> bool:
    states = await h.states(sagas)
    return all(v == "RUNNING" for v in states.values())


async def test_flushdb_while_sagas_wait_on_lost_commands(h: Harness) -> None:
    wf = h.workflows_file(workflow(timeout_s=STEP_TIMEOUT_S))
    orchestrator = h.orchestrator(wf)
    # Every worker but reasoning: the sagas wait at reasoning, their commands only in Redis.
    later_steps = h.sim(only=["codegen", "ml", "backtest"])
    await h.ready(orchestrator, later_steps)
    sagas = await h.start(3)
    await eventually(lambda: running(h, sagas), timeout=60)
    await eventually(lambda: h.redis.exists(sentinel_key(h.settings.namespace)), timeout=30)

    assert await h.redis.flushdb()
    reasoning = h.sim(only=["reasoning"])
    await h.ready(reasoning)
    after = await h.start(1)

    states = await h.wait_terminal(sagas + after, timeout=WAIT_S)
    assert set(states.values()) == {"COMPLETED"}, states
    assert await h.violations(sagas + after) == {}
    relay_log, workers_log = orchestrator.text(), later_steps.text()
    assert "Redis forgot" in relay_log, relay_log[-2000:]
    for group_gone in ("on " + h.settings.streams.events("reasoning"), "on " + h.settings.streams.commands("codegen")):
        assert group_gone in relay_log + workers_log, group_gone
    assert orchestrator.popen.poll() is None and later_steps.popen.poll() is None


# --- make chaos -------------------------------------------------------------------------


async def submit_recorded(h: Harness, n: int, request: ResearchRequest) -> list[uuid.UUID]:
    """Starts recorded in PostgreSQL, as the API and the CLI record them."""

    async def no_owner(_conn: object, _saga_id: uuid.UUID) -> bool:
        return True

    async with AlphaSaga(h.settings) as client:
        return [(await client.submit_recorded(request, no_owner)).saga_id for _ in range(n)]


async def under_way(h: Harness, sagas: list[uuid.UUID], at_least: int) -> bool:
    """At least ``at_least`` sagas started and none ended yet: the disruption hits work in flight."""
    states = await h.states(sagas)
    return sum(v == "RUNNING" for v in states.values()) >= at_least


async def last_end(h: Harness, sagas: list[uuid.UUID]) -> float:
    """When the last of ``sagas`` ended (its terminal event's commit), as a Unix time."""
    async with h.store.pool.acquire() as conn:
        value = await conn.fetchval(
            "SELECT extract(epoch FROM max(recorded_at)) FROM events WHERE stream_id = ANY($1::text[])",
            [saga_stream(s) for s in sagas],
        )
    return float(value)


async def nothing_left_behind(h: Harness) -> None:
    """No dead letter, and nothing pending in any group the services read."""
    streams = h.settings.streams
    readers = [(streams.commands(Service.ORCHESTRATOR), "orchestrator")]
    readers += [(streams.events(s), "orchestrator") for s in KINDS.services()]
    readers += [(streams.commands(s), s) for s in KINDS.services()]
    for stream, group in readers:
        assert await h.redis.xlen(streams.dead_letters(stream)) == 0, f"dead letters of {stream}"
        if await h.redis.exists(stream):
            pending: Any = await h.redis.xpending(stream, group)
            assert pending["pending"] == 0, (stream, group, pending)


async def disrupted(
    h: Harness,
    n: int,
    request: ResearchRequest,
    disrupt: Callable[[], Awaitable[None]],
    *,
    expect: set[str],
    label: str,
) -> float:
    """``n`` sagas, ``disrupt`` while they run (returns once Redis is back), one more saga
    after; every one ends long before a step timeout could have ended it, with its
    invariants. Returns the time from Redis's return to the last end."""
    sagas = await submit_recorded(h, n, request)
    await eventually(lambda: under_way(h, sagas, max(1, n // 2)), timeout=300, interval=0.2)
    await disrupt()
    back = time.time()
    after = await submit_recorded(h, 1, request)
    states = await h.wait_terminal(sagas + after, timeout=WAIT_S)
    took = await last_end(h, sagas + after) - back
    load = os.getloadavg()[0]
    print(
        f"{label}: {n} sagas, the last ended {took:.1f} s after Redis's return"
        f" ({'within' if took <= ISSUE_TARGET_S else 'past'} the issue's {ISSUE_TARGET_S:.0f} s; load {load:.1f});"
        f" ends {Counter(states.values())}"
    )
    assert set(states.values()) <= expect, states
    assert states[after[0]] == "COMPLETED", "a saga submitted after the return completes"
    assert await h.violations(sagas + after) == {}
    await asyncio.sleep(2.0)  # the last acks
    await nothing_left_behind(h)
    return took


@pytest.fixture
def real_stack(h: Harness, tmp_path: Path) -> Iterator[Stack]:
    """The five real services, as ``alphasaga up`` starts them, on the test's own Redis."""
    stack = Stack(h.settings.model_copy(update={"data_dir": tmp_path / "stack"}), say=print)
    stack.extra_env.update({k: v for k, v in h.env.items() if k.startswith("ALPHASAGA_RE")})
    try:
        stack.start(timeout=180)
        yield stack
    finally:
        stack.stop()


@pytest.mark.chaos
@pytest.mark.parametrize("kill", [True, False], ids=["killed", "reference"])
async def test_redis_killed_and_restarted_empty_with_20_real_sagas_in_flight(
    h: Harness, own_redis: OwnRedis, real_stack: Stack, kill: bool
) -> None:
    """``reference``: the same sagas, Redis left alone, timed from the same moment: what
    the machine takes for their work, beside which the recovery's time is read."""

    async def kill_and_restart_empty() -> None:
        if kill:
            own_redis.kill9()
            own_redis.start()

    # A shorter period than the default's: twenty sagas' work on a shared two-core machine.
    request = ResearchRequest(dataset="sp500", start="2016-01-01")
    label = "kill -9, empty" if kill else "reference, Redis left alone"
    await disrupted(h, 20, request, kill_and_restart_empty, expect={"COMPLETED"}, label=label)
    assert all(p.poll() is None for p in real_stack.processes.values()), "no service exited"


@pytest.mark.chaos
async def test_flushdb_while_20_sagas_run(h: Harness, own_redis: OwnRedis) -> None:
    orchestrator = h.orchestrator(h.workflows_file(workflow(timeout_s=STEP_TIMEOUT_S)))
    sim = h.sim(fail_rate=0.1, duplicate_rate=0.1, delay_s=SIM_DELAY_S)
    await h.ready(orchestrator, sim)

    async def flush() -> None:
        assert await h.redis.flushdb()

    await disrupted(
        h, 20, ResearchRequest(dataset="sp500"), flush, expect={"COMPLETED", "ROLLED_BACK"}, label="FLUSHDB"
    )
    assert orchestrator.popen.poll() is None and sim.popen.poll() is None


@pytest.mark.chaos
@pytest.mark.parametrize("own_redis", [True], indirect=True, ids=["aof"])
async def test_redis_restarted_with_aof_loses_no_saga(h: Harness, own_redis: OwnRedis) -> None:
    orchestrator = h.orchestrator(h.workflows_file(workflow(timeout_s=STEP_TIMEOUT_S)))
    sim = h.sim(fail_rate=0.1, duplicate_rate=0.1, delay_s=SIM_DELAY_S)
    await h.ready(orchestrator, sim)

    async def kill_and_restart_from_aof() -> None:
        own_redis.kill9()
        own_redis.start()

    await disrupted(
        h,
        20,
        ResearchRequest(dataset="sp500"),
        kill_and_restart_from_aof,
        expect={"COMPLETED", "ROLLED_BACK"},
        label="kill -9, AOF",
    )


@pytest.mark.chaos
@pytest.mark.parametrize("own_redis", [True], indirect=True, ids=["aof"])
async def test_redis_down_30_s_then_back_with_its_data(h: Harness, own_redis: OwnRedis) -> None:
    orchestrator = h.orchestrator(h.workflows_file(workflow(timeout_s=STEP_TIMEOUT_S)))
    sim = h.sim(delay_s=SIM_DELAY_S)
    await h.ready(orchestrator, sim)

    async def down_30_s() -> None:
        own_redis.stop()  # a clean shutdown: the AOF has everything
        await asyncio.sleep(30)
        own_redis.start()

    await disrupted(h, 20, ResearchRequest(dataset="sp500"), down_30_s, expect={"COMPLETED"}, label="down 30 s")
    assert orchestrator.popen.poll() is None and sim.popen.poll() is None, "every service reconnected"


async def test_a_group_that_cannot_be_made_again_ends_the_process_with_one_line(
    h: Harness, own_redis: OwnRedis
) -> None:
    """A Redis that forgot a group and refuses to make it again (here: the service's user
    lost the right to XGROUP, as a read-only replica or a full one refuses it): not live
    past ALPHASAGA_GROUP_RECOVERY_S, and the process exits with one line naming it."""
    await h.redis.execute_command("ACL", "SETUSER", "svc", "on", ">pw", "~*", "&*", "+@all")
    url = own_redis.url.replace("redis://", "redis://svc:pw@")
    orchestrator = h.orchestrator(h.workflows_file(workflow()), ALPHASAGA_REDIS_URL=url, ALPHASAGA_GROUP_RECOVERY_S="2")
    await h.ready(orchestrator)
    stream = h.settings.streams.commands("orchestrator")
    await h.redis.execute_command("ACL", "SETUSER", "svc", "-xgroup")
    await h.redis.xgroup_destroy(stream, "orchestrator")
    assert orchestrator.wait_exit(60) == 1
    text = orchestrator.text()
    assert text.count(f"could not make consumer group orchestrator on {stream} again") == 1, text[-3000:]
    last = text.strip().splitlines()[-1]
    assert last.startswith(
        f"alphasaga-orchestrator: consumer_groups: consumer group orchestrator on {stream} is gone"
    ), last
