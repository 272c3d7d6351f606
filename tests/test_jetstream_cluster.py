"""Beyond one machine (issue #27): a three-node JetStream cluster as containers started
through testcontainers (over Podman's Docker-compatible socket where no Docker engine runs),
the bus's streams and buckets at three replicas, one node's container killed with SIGKILL
while a burst of sagas runs, then started again. Nothing is lost, nothing is stuck, no command is worked twice
(the invariant checker), and the time until sagas finish again is reported."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
import redis.asyncio as aioredis

from alphasaga_shared.config import Settings
from alphasaga_shared.eventstore import EventStore
from tests.support.harness import TERMINAL_KINDS, Harness, workflow
from tests.support.nats_cluster import ContainerCluster
from tests.support.own_nats import remove_namespace

pytestmark = pytest.mark.chaos


@pytest.fixture
def cluster(docker_host: str) -> Iterator[ContainerCluster]:
    own = ContainerCluster(3)
    try:
        own.start()
        yield own
    finally:
        own.remove()


async def replicated_streams_can_be_made(url: str) -> None:
    """Wait until the cluster has a meta leader and room for a stream at three replicas."""
    deadline = time.monotonic() + 60
    nc = await nats.connect(url.split(","))
    try:
        js = nc.jetstream(timeout=5)
        while True:
            try:
                await js.add_stream(name="readiness_probe", subjects=["readiness.probe"], num_replicas=3)
                await js.delete_stream("readiness_probe")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await nc.close()


@pytest.mark.timeout(900)
async def test_kill_9_one_node_of_three_during_a_burst_loses_and_repeats_nothing(
    cluster: ContainerCluster,
    settings: Settings,
    env: dict[str, str],
    store: EventStore,
    redis: aioredis.Redis,
    tmp_path: Path,
) -> None:
    await replicated_streams_can_be_made(cluster.url)
    on_cluster = settings.model_copy(update={"broker_url": cluster.url, "nats_replicas": 3})
    cluster_env = {**env, "ALPHASAGA_BROKER_URL": cluster.url, "ALPHASAGA_NATS_REPLICAS": "3"}
    h = Harness(on_cluster, cluster_env, store, redis, tmp_path)
    try:
        wf = h.workflows_file(workflow(timeout_s=10.0, max_attempts=4))
        sim = h.sim(fail_rate=0.05, duplicate_rate=0.1)
        orch = h.orchestrator(wf)
        await h.ready(sim, orch)
        sagas = await h.start(150)
        await asyncio.sleep(1.0)
        victim = cluster.nodes[0]  # the seed every process connected to first
        victim.kill9()  # returns once the container has exited
        killed_at = time.monotonic()
        # Counted after the kill: a saga that finished while the kill was under way must
        # not count as the burst moving again.
        finished_before = _finished(await h.states(sagas))
        recovered_in = await _first_finish_after(h, sagas, finished_before)
        await asyncio.sleep(2.0)
        victim.start()
        restarted_at = time.monotonic() - killed_at
        states = await h.wait_terminal(sagas, timeout=600)
        print(
            f"JetStream R3, node {victim.name} killed -9 with {len(sagas) - finished_before} sagas unfinished:"
            f" sagas finishing again {recovered_in:.2f} s after the kill; node back at {restarted_at:.1f} s;"
            f" all {len(sagas)} terminal {time.monotonic() - killed_at:.1f} s after the kill;"
            f" {Counter(states.values())}"
        )
        assert set(states.values()) <= {"COMPLETED", "ROLLED_BACK"}, "none lost, none stuck"
        assert await h.violations(sagas) == {}, "no command worked twice, no rule of the saga broken"
    finally:
        h.stop_all()
        await remove_namespace(cluster.url, settings.namespace)


def _finished(states: dict[object, str]) -> int:
    return sum(1 for s in states.values() if s in TERMINAL_KINDS.values())


async def _first_finish_after(h: Harness, sagas: list, finished_before: int) -> float:  # type: ignore[type-arg]
    """Seconds from now until one more saga has finished (the burst moves again)."""
    started = time.monotonic()
    while time.monotonic() - started < 300:
        if _finished(await h.states(sagas)) > finished_before:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError("no saga finished within 300 s of the kill")
