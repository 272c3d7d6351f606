"""Redis forgets (issue #29): a FLUSHDB while sagas wait on commands that only Redis held.
The relay learns it from its sentinel and publishes the unfinished sagas' outbox again, the
services make their groups again, and every saga ends long before its step timeout could
have saved it. The Redis is the test's own: a flush must not touch anyone else's streams."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from alphasaga_shared.sentinel import sentinel_key
from tests.support.harness import Harness, workflow
from tests.support.helpers import eventually
from tests.support.own_redis import OwnRedis

# The step timeout is far past every wait below: a saga that ends did so by the recovery.
STEP_TIMEOUT_S = 900.0
# What the issue promises: every saga PostgreSQL recorded ends within this of Redis's return.
RECOVERY_DEADLINE_S = 60.0


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def servers(servers: object, own_redis: OwnRedis) -> object:
    """The session's PostgreSQL, with this test's own Redis."""
    from conftest import Servers

    assert isinstance(servers, Servers)
    return Servers(own_redis.url, servers.database_url)


async def running(h: Harness, sagas: list[object]) -> bool:
    states = await h.states(sagas)  # type: ignore[arg-type]
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

    states = await h.wait_terminal(sagas + after, timeout=RECOVERY_DEADLINE_S)
    assert set(states.values()) == {"COMPLETED"}, states
    assert await h.violations(sagas + after) == {}
    relay_log, workers_log = orchestrator.text(), later_steps.text()
    assert "Redis forgot" in relay_log, relay_log[-2000:]
    for group_gone in ("on " + h.settings.streams.events("reasoning"), "on " + h.settings.streams.commands("codegen")):
        assert group_gone in relay_log + workers_log, group_gone
    assert orchestrator.popen.poll() is None and later_steps.popen.poll() is None
