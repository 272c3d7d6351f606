"""Outages of a store during real sagas (``make chaos``, not in ``make test``; issue #31).

The five real services as processes, over a PostgreSQL cluster and a Redis server of the
test's own (the machine's are shared, and these get crashed and stopped):

* PostgreSQL's postmaster killed with -9 for 10 s, then Redis stopped for 10 s with its
  data kept, each during 20 real research sagas: every saga completes, nothing is
  dead-lettered, the invariant checker finds nothing.
* A 60 s outage of PostgreSQL with 30 s step deadlines: the deadlines pass during it, the
  retry policy decides once it is over, and the saga's record names the outage.

Each prints what it measured (for docs/benchmarks.md): how long the outage lasted, how
long from the store's return until the held work moved on, until every saga ended.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from alphasaga_cli.stack import Stack
from alphasaga_client import AlphaSaga
from alphasaga_contracts import saga as sg
from alphasaga_shared.config import Settings
from alphasaga_shared.eventstore import EventStore, outbox_stream
from tests.support.harness import TERMINAL_KINDS, Harness, workflow
from tests.support.helpers import eventually, remove_stack_data
from tests.support.own_servers import OwnPostgres, OwnRedis

# Real services, real sagas and outages of a minute: longer than the suite's 300 s default.
pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]

SAGAS = 20
OUTAGE_S = 10.0
HELD = "waiting for it, holding the work that needs it"


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[OwnPostgres]:
    try:
        pg = OwnPostgres()
    except (RuntimeError, FileNotFoundError) as exc:
        pytest.skip(f"no PostgreSQL cluster of the test's own: {exc}")
    pg.start()
    yield pg
    pg.remove()


@pytest.fixture(scope="module")
def own_redis() -> Iterator[OwnRedis]:
    try:
        server = OwnRedis()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    server.start()
    yield server
    server.remove()


@asynccontextmanager
async def real_stack(
    redis_url: str, database_url: str, tmp: Path, extra_env: dict[str, str] | None = None
) -> AsyncIterator[tuple[Stack, Harness]]:
    """The five services in a namespace and schema of their own, and a harness reading
    their sagas; all of it removed afterwards."""
    ns = f"out{uuid.uuid4().hex[:8]}"
    settings = Settings(
        redis_url=redis_url, database_url=database_url, namespace=ns, database_schema=f"t_{ns}", data_dir=tmp
    )
    stack = Stack(settings, say=print, extra_env=extra_env or {})
    await asyncio.to_thread(stack.start, 180)
    store = await EventStore.connect(database_url, settings.database_schema)
    redis = aioredis.from_url(redis_url)
    try:
        yield stack, Harness(settings, stack.env(), store, redis, tmp)
    finally:
        await asyncio.to_thread(stack.stop)
        await store.close()
        await redis.aclose()
        await remove_stack_data(redis_url, database_url, ns, settings.database_schema)


async def dead_letters(h: Harness) -> int:
    keys = [k async for k in h.redis.scan_iter(match=f"{h.settings.namespace}:*:dlq", count=1000)]
    return sum([await h.redis.xlen(k) for k in keys])


async def steps_completed(h: Harness) -> int:
    async with h.store.pool.acquire() as conn:
        n: int = await conn.fetchval("SELECT count(*) FROM events WHERE type LIKE '%StepSucceeded'")
    return n


def logs(stack: Stack) -> dict[str, str]:
    return {p.stem: p.read_text(errors="replace") for p in sorted(stack.log_dir.glob("*.log"))}


async def step_failures(h: Harness, saga: uuid.UUID) -> list[str]:
    """The reasons of the saga's failed step attempts, as its followers were told."""
    rows = await h.store.read_stream(outbox_stream(str(saga)))
    found = []
    for r in rows:
        if r.type == sg.SagaStepFailed.TYPE:
            data: Any = r.data if isinstance(r.data, dict) else json.loads(r.data)
            found.append(str(data["error"]))
    return found


async def recovery(h: Harness, sagas: list[uuid.UUID], back: float) -> tuple[dict[uuid.UUID, str], str]:
    """Wait for every saga to end; what it took from the store's return: until the next
    step completed (the held work moved on), until the last saga ended."""
    done = await steps_completed(h)

    async def moved_on() -> bool:  # or nothing is left to move: the states then say why
        return await steps_completed(h) > done or set((await h.states(sagas)).values()) <= set(TERMINAL_KINDS.values())

    await eventually(moved_on, timeout=600, interval=0.05)
    moved = time.monotonic() - back
    states = await h.wait_terminal(sagas, timeout=600)
    return (
        states,
        f"next step done {moved:.1f} s after it was back, every saga ended {time.monotonic() - back:.1f} s after",
    )


async def in_flight(h: Harness) -> None:
    """Work is under way: a few steps done, most still to do."""
    await eventually(lambda: _at_least(h, 3), timeout=300, interval=0.1)


async def _at_least(h: Harness, n: int) -> bool:
    return await steps_completed(h) >= n


async def status_while_held(stack: Stack, h: Harness, sagas: list[uuid.UUID]) -> str:
    """`alphasaga status` of a saga whose message a service holds, while PostgreSQL is down."""

    async def one_held() -> uuid.UUID | None:
        for s in sagas:
            if await client.held(s):
                return s
        return None

    async with AlphaSaga(h.settings) as client:
        saga = await eventually(one_held, timeout=60, interval=0.1)
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "alphasaga_cli", "status", str(saga)],
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0, "the saga's state cannot be read while PostgreSQL is down"
    return done.stdout + done.stderr


async def assert_completed_with_nothing_lost(h: Harness, sagas: list[uuid.UUID], states: dict[uuid.UUID, str]) -> None:
    """The issue's acceptance: every saga COMPLETED, no dead letter, no invariant broken."""
    assert set(states.values()) == {"COMPLETED"}, states
    assert await dead_letters(h) == 0
    assert await h.violations(sagas) == {}


async def test_a_postgresql_crash_of_10_s_during_20_real_sagas_loses_none(
    own_postgres: OwnPostgres, own_redis: OwnRedis, tmp_path: Path
) -> None:
    async with real_stack(own_redis.url, own_postgres.url, tmp_path) as (stack, h):
        sagas = await h.start(SAGAS)
        await in_flight(h)
        own_postgres.crash()
        down = time.monotonic()
        shown = await status_while_held(stack, h, sagas)
        print(f"alphasaga status during the outage:\n{shown}")
        assert "waiting for PostgreSQL since" in shown and "cannot reach PostgreSQL" in shown, shown
        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down)))
        await asyncio.to_thread(own_postgres.start)
        back = time.monotonic()
        states, took = await recovery(h, sagas, back)
        print(f"PostgreSQL down {back - down:.1f} s; {took}")
        print(f"ends: {Counter(states.values())}")
        await assert_completed_with_nothing_lost(h, sagas, states)
        text = logs(stack)
        met = [name for name, t in text.items() if "PostgreSQL unreachable since" in t and HELD in t]
        assert met, "the outage was met and waited out by some service"
        print(f"services that waited it out: {met}")
        assert all(p.poll() is None for p in stack.processes.values()), "no service exited"


async def test_redis_stopped_for_10_s_with_its_data_kept_during_20_real_sagas_loses_none(
    own_postgres: OwnPostgres, own_redis: OwnRedis, tmp_path: Path
) -> None:
    async with real_stack(own_redis.url, own_postgres.url, tmp_path) as (stack, h):
        sagas = await h.start(SAGAS)
        await in_flight(h)
        await asyncio.to_thread(own_redis.stop)
        down = time.monotonic()
        await asyncio.sleep(OUTAGE_S)
        await asyncio.to_thread(own_redis.start)
        back = time.monotonic()
        states, took = await recovery(h, sagas, back)
        print(f"Redis down {back - down:.1f} s; {took}")
        print(f"ends: {Counter(states.values())}")
        await assert_completed_with_nothing_lost(h, sagas, states)
        met = [name for name, t in logs(stack).items() if "Redis unreachable since" in t]
        assert met, "the outage was met by some service"
        print(f"services that waited it out: {met}")
        assert all(p.poll() is None for p in stack.processes.values()), "no service exited"


async def test_a_60_s_outage_past_30_s_deadlines_follows_the_retry_policy_and_names_the_outage(
    own_postgres: OwnPostgres, own_redis: OwnRedis, tmp_path: Path
) -> None:
    wf = tmp_path / "workflows.yaml"
    wf.write_text(json.dumps({"workflows": [workflow(timeout_s=30, max_attempts=3, backoff_s=1.0)]}))
    async with real_stack(own_redis.url, own_postgres.url, tmp_path, {"ALPHASAGA_WORKFLOWS": str(wf)}) as (_, h):
        sagas = await h.start(5)
        await in_flight(h)
        own_postgres.crash()
        down = time.monotonic()
        await asyncio.sleep(60)
        await asyncio.to_thread(own_postgres.start)
        back = time.monotonic()
        states, took = await recovery(h, sagas, back)
        print(f"PostgreSQL down {back - down:.1f} s (deadlines 30 s); {took}")
        assert set(states.values()) == {"COMPLETED"}, states  # the second attempt, after the outage
        failures = {s: await step_failures(h, s) for s in sagas}
        print(f"failed attempts: {json.dumps({str(s)[:8]: f for s, f in failures.items()}, indent=1)}")
        assert any(failures.values()), "some step's deadline passed during the outage"
        unnamed = [f for fs in failures.values() for f in fs if not re.search(r"PostgreSQL unreachable", f)]
        assert unnamed == [], "every attempt that failed says it was the outage"
        assert await dead_letters(h) == 0
        assert await h.violations(sagas) == {}


async def test_past_alphasaga_outage_exit_s_a_service_exits_with_one_line(
    own_postgres: OwnPostgres, own_redis: OwnRedis, tmp_path: Path
) -> None:
    async with real_stack(own_redis.url, own_postgres.url, tmp_path, {"ALPHASAGA_OUTAGE_EXIT_S": "5"}) as (stack, h):
        await h.start(3)
        await in_flight(h)
        own_postgres.crash()
        try:
            orchestrator = stack.processes["orchestrator"]
            code = await asyncio.to_thread(orchestrator.wait, 120)
        finally:
            await asyncio.to_thread(own_postgres.start)
        last = (stack.log_dir / "orchestrator.log").read_text().strip().splitlines()[-1]
        print(f"exit {code}: {last}")
        assert code == 1
        assert re.fullmatch(
            r"alphasaga-orchestrator: outage:postgresql: waiting for PostgreSQL since \d\d:\d\d:\d\d UTC"
            r" for \d+ s \(more than 5 s\)",
            last,
        ), last
