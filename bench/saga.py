"""Orchestration overhead: workers that answer at once (tests/support/sim_workers.py),
real orchestrator processes, real Redis and PostgreSQL. Beside it, in the same run, a
Celery chain of four no-op tasks on the same Redis."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import yaml

from alphasaga_client import AlphaSaga
from alphasaga_contracts import saga as sg
from alphasaga_contracts.envelope import TYPE
from alphasaga_contracts.research import ResearchRequest
from alphasaga_orchestrator.decide import Context, decide
from alphasaga_orchestrator.repository import SagaRepository
from alphasaga_orchestrator.sagastore import SagaStore
from alphasaga_saga.aggregate import Saga
from alphasaga_saga.streams import saga_stream
from alphasaga_saga.workflow import DEFAULT_WORKFLOWS, RESEARCH_V1
from alphasaga_shared.bus.transport import LogPort
from alphasaga_shared.config import Settings
from alphasaga_shared.eventstore import EventStore
from alphasaga_shared.wire import envelope_for

from . import floor
from .common import Servers, bench_settings, cleanup, percentile
from .peers import free_port

ROOT = Path(__file__).resolve().parents[1]
# A burst that has not ended by then never will (its requests were refused, say).
BURST_TIMEOUT_S = 600.0

WORKFLOW = {
    "workflows": [
        {
            "name": "research",
            "version": 1,
            "steps": [
                {"name": s.name, "kind": s.kind.name, "timeout_s": 60, "retry": {"max_attempts": 3, "backoff_s": 0}}
                for s in RESEARCH_V1.steps
            ],
        }
    ]
}

# The same workflow as files said it before step kinds (issue #22), one kind per service.
WORKFLOW_BY_SERVICE = {
    "workflows": [
        {
            **WORKFLOW["workflows"][0],
            "steps": [
                {
                    "name": s.name,
                    "service": s.kind.service.value,
                    "timeout_s": 60,
                    "retry": {"max_attempts": 3, "backoff_s": 0},
                }
                for s in RESEARCH_V1.steps
            ],
        }
    ]
}


def knows_step_kinds(root: Path) -> bool:
    """Whether the checkout at ``root`` has step kinds (issue #22): its workflows name a
    step's kind, which a service hosting several kinds requires."""
    steps = root / "contracts" / "src" / "alphasaga_contracts" / "steps.py"
    return steps.exists() and "KINDS" in steps.read_text()


class Stack:
    """n orchestrators and the simulated workers as processes, in their own namespace."""

    def __init__(
        self,
        s: Servers,
        orchestrators: int,
        sim_config: dict[str, Any],
        separate_relay: bool = False,
        separate_projector: bool = False,
        extra_env: dict[str, str] | None = None,
        root: Path = ROOT,
        workflows: dict[str, Any] | None = None,
        metrics: bool = False,
    ) -> None:
        """``root``: the checkout whose code the stack runs (another commit's, with its own
        ``.venv``, to measure before and after in one run); ``workflows``: a workflow file's
        document (default: research v1 with no backoff); ``metrics``: each orchestrator
        serves /metrics on a port of its own, listed in ``metrics_urls``."""
        broker = (extra_env or {}).get("ALPHASAGA_BROKER_URL")
        self.settings = bench_settings(s, broker_url=broker) if broker else bench_settings(s)
        self.root = root
        self.python = sys.executable if root == ROOT else str(root / ".venv" / "bin" / "python")
        self.tmp = Path(tempfile.mkdtemp(prefix="alphasaga-bench-"))
        wf = self.tmp / "workflows.yaml"
        # Another checkout may predate step kinds: it gets the form every version before them reads.
        wf.write_text(yaml.safe_dump(workflows or (WORKFLOW if knows_step_kinds(root) else WORKFLOW_BY_SERVICE)))
        env = {
            **os.environ,
            "ALPHASAGA_REDIS_URL": s.redis_url,
            "ALPHASAGA_DATABASE_URL": s.database_url,
            "ALPHASAGA_NAMESPACE": self.settings.namespace,
            "ALPHASAGA_DATABASE_SCHEMA": self.settings.database_schema,
            "ALPHASAGA_WORKFLOWS": str(wf),
            "ALPHASAGA_BLOCK_MS": "100",
            "ALPHASAGA_LOG_LEVEL": "WARNING",
            "SIM_CONFIG": json.dumps(sim_config),
            "PYTHONPATH": str(root),
            **(extra_env or {}),
        }
        env.pop("ALPHASAGA_CONSUMER", None)
        if separate_relay:
            env["ALPHASAGA_RUN_RELAY"] = "false"
        if separate_projector:
            env["ALPHASAGA_RUN_PROJECTOR"] = "false"
        self.env = env
        self.metrics_urls: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        for i in range(orchestrators):
            port: dict[str, str] = {}
            if metrics:
                port = {"ALPHASAGA_HTTP_PORT": str(free_port())}
                self.metrics_urls.append(f"http://127.0.0.1:{port['ALPHASAGA_HTTP_PORT']}/metrics")
            self.procs.append(self._spawn("alphasaga_orchestrator", f"o{i}.log", port))
        if separate_relay:
            self.procs.append(self._spawn("alphasaga_shared.outbox", "relay.log"))
        if separate_projector:
            self.procs.append(self._spawn("alphasaga_orchestrator.projection", "projector.log"))
        self.procs.append(
            subprocess.Popen(
                [self.python, "-m", "tests.support.sim_workers"],
                env=env,
                cwd=root,
                stdout=(self.tmp / "sim.log").open("w"),
                stderr=subprocess.STDOUT,
            )
        )

    def _spawn(self, module: str, log_name: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [self.python, "-m", module],
            env={**self.env, **(env or {})},
            cwd=self.root,
            stdout=subprocess.DEVNULL,
            stderr=(self.tmp / log_name).open("w"),
        )

    async def burst(self, s: Servers, n: int, version: int | None = None) -> float:
        return await burst(self.settings, n, version)

    async def ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            logs = "".join(p.read_text() for p in self.tmp.glob("*.log"))
            if logs.count("ready") >= len(self.procs):
                return
            await asyncio.sleep(0.1)
        logs = "".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(self.tmp.glob("*.log")))
        raise RuntimeError(f"bench stack not ready within 60 s; its logs:\n{logs}")

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                print(f"warning: {p.args!r} did not stop within 20 s; killed", file=sys.stderr)
                p.kill()
                p.wait()

    async def cleanup(self, s: Servers) -> None:
        self.stop()
        await cleanup(s, self.settings.namespace, self.settings.database_schema)
        shutil.rmtree(self.tmp, ignore_errors=True)


async def run_to_end(client: AlphaSaga, request: ResearchRequest, version: int | None = None) -> uuid.UUID:
    """Submit one request and follow its saga until it ends."""
    submitted = await client.submit(request, workflow_version=version)
    async for _ in client.follow(submitted.saga_id, after=submitted.follow_from, timeout_s=30):
        pass
    saga_id: uuid.UUID = submitted.saga_id
    return saga_id


_TERMINAL = {t.TYPE for t in (sg.SagaCompleted, sg.SagaRolledBack, sg.SagaCompensationFailed)}


async def burst(settings: Settings, n: int, version: int | None = None) -> float:
    """Submit n sagas at once, as a burst of users would; seconds until the last one
    ended, as a client sees it: its terminal lifecycle event on the sagas stream (read
    there rather than counted in PostgreSQL, whose CPU the benchmarks measure), through
    the bus's log port, whichever transport carries it."""
    async with AlphaSaga(settings) as client:
        await client.connect(database=False)
        transport = await client.transport()
        stream = settings.streams.sagas
        cursor = await lifecycle_cursor(transport, stream)
        requests = [ResearchRequest(dataset="sp500")] * n
        started = time.perf_counter()
        await client.submit_many(requests, workflow_version=version)
        await until_ended(transport, stream, cursor, n)
        return time.perf_counter() - started


async def lifecycle_cursor(transport: LogPort, stream: str) -> str:
    """The lifecycle stream's newest entry id: sagas that end after it are read past it."""
    return await transport.tip(stream)


async def until_ended(transport: LogPort, stream: str, cursor: str, n: int) -> None:
    """Wait for n sagas' terminal lifecycle events past ``cursor``."""
    ended, give_up = 0, time.monotonic() + BURST_TIMEOUT_S
    while ended < n:
        if time.monotonic() > give_up:
            raise RuntimeError(f"{ended} of {n} sagas ended within {BURST_TIMEOUT_S:g} s: see the stack's logs")
        for _, entry_id, fields in await transport.read({stream: cursor}, count=1000, block_ms=1000):
            cursor = entry_id
            ended += fields.get(TYPE) in _TERMINAL


async def throughput(
    s: Servers,
    orchestrators: int,
    n: int = 1000,
    *,
    separate_relay: bool = False,
    separate_projector: bool = False,
    extra_env: dict[str, str] | None = None,
) -> float:
    """Sagas per second from submitting n at once to the last one completed."""
    stack = Stack(s, orchestrators, {}, separate_relay, separate_projector, extra_env)
    try:
        await stack.ready()
        return n / await stack.burst(s, n)
    finally:
        await stack.cleanup(s)


async def latency(
    s: Servers,
    n: int = 100,
    sim: dict[str, Any] | None = None,
    *,
    separate_relay: bool = False,
    extra_env: dict[str, str] | None = None,
) -> list[float]:
    """One saga in flight at a time: submit to terminal lifecycle event, in ms."""
    stack = Stack(s, 1, sim or {}, separate_relay, extra_env=extra_env)
    try:
        await stack.ready()
        return await one_by_one(stack.settings, n)
    finally:
        await stack.cleanup(s)


async def one_by_one(settings: Settings, n: int, warmup: int = 5) -> list[float]:
    """Submit ``n`` sagas one after another, each once the one before ended; ms from
    submit to the terminal lifecycle event of each after the first ``warmup``."""
    times = []
    async with AlphaSaga(settings) as client:
        await client.connect(database=False)
        for _ in range(n):
            started = time.perf_counter()
            await run_to_end(client, ResearchRequest(dataset="sp500"))
            times.append((time.perf_counter() - started) * 1000)
    return times[warmup:]


async def rebuild(s: Servers, n_events: int = 1000) -> dict[str, float]:
    """Load a saga of ~n_events events with and without its snapshot, in ms."""
    settings: Settings = bench_settings(s)
    store = await EventStore.connect(s.database_url, settings.database_schema)
    try:
        sagas = SagaStore(store)
        repo = SagaRepository(sagas, snapshot_every=0)
        saga_id = uuid.uuid4()
        saga = Saga(saga_id=saga_id, workflow="research", workflow_version=1, request={}, traceparent="")
        # A long saga: many timed-out attempts (each command, timeout and retry is an event).
        for attempt in range(1, n_events // 2):
            saga.command_step(step="reasoning", attempt=attempt, message_id=str(attempt), due_at="2030-01-01")
            saga.step_timed_out(step="reasoning", attempt=attempt)
        pending = saga.collect_events()
        for i in range(0, len(pending), 500):
            await store.append(saga_stream(saga_id), repo.to_new_events(pending[i : i + 500], {}), expected_version=i)
        await sagas.save_snapshot(repo.snapshot_of(saga))
        out = {}

        async def without_snapshot(saga_id: uuid.UUID) -> Saga | None:
            return repo.mapper.fold(saga_id, await sagas.events_of(saga_id))

        for label, load in (("without snapshot", without_snapshot), ("with snapshot", repo.load)):
            runs = []
            for _ in range(7):
                t = time.perf_counter()
                loaded = await load(saga_id)
                runs.append((time.perf_counter() - t) * 1000)
                assert loaded is not None and loaded.version == saga.version
            out[label] = statistics.median(runs)
        out["events"] = float(saga.version)
        return out
    finally:
        await store.close()
        conn = await asyncpg.connect(s.database_url)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{settings.database_schema}" CASCADE')
        await conn.close()


def decision_cost(n: int = 2000) -> float:
    """Pure decide() for a whole saga, in microseconds per decision (no I/O)."""
    from tests.support import replies

    ctx = Context(DEFAULT_WORKFLOWS)
    started = time.perf_counter()
    for _ in range(n // 5):
        saga_id = uuid.uuid4()
        start = sg.StartResearch(saga_id=saga_id, request=ResearchRequest(dataset="sp500"))
        d = decide(None, envelope_for(start, correlation_id=str(saga_id)), ctx)
        saga = d.saga
        for step in ("reasoning", "codegen", "ml", "backtest"):
            assert saga is not None
            saga.collect_events()
            d = decide(saga, envelope_for(replies.success(step, saga_id, step, 1), correlation_id="c"), ctx)
    return (time.perf_counter() - started) / n * 1e6


async def rollback_time(s: Servers, n: int = 30) -> list[float]:
    """The backtest step fails; ms from its failure being recorded to RolledBack, after
    compensating ml, codegen and reasoning in turn (from the events' commit times)."""
    stack = Stack(s, 1, {"fail_always": ["backtest"]})
    try:
        await stack.ready()
        times = []
        async with AlphaSaga(stack.settings) as client:
            for i in range(n):
                saga_id = await run_to_end(client, ResearchRequest(dataset="sp500"))
                if i < 3:
                    continue  # warm-up
                rows = await client.events(saga_id)
                failed = next(r.recorded_at for r in rows if r.type.endswith(".StepFailed"))
                compensations = sum(r.type.endswith(".StepCompensated") for r in rows)
                assert compensations == 3 and rows[-1].type.endswith(".RolledBack")
                times.append((rows[-1].recorded_at - failed).total_seconds() * 1000)
        return times
    finally:
        await stack.cleanup(s)


async def report(s: Servers) -> str:
    """All the orchestration figures as Markdown."""
    lines = ["## Orchestration (issue #3): workers that answer at once\n"]
    rates = {k: statistics.median([await throughput(s, k, 1000) for _ in range(3)]) for k in (1, 2)}
    apart = {
        k: statistics.median([await throughput(s, k, 1000, separate_relay=True) for _ in range(3)]) for k in (1, 2)
    }
    both_apart = {
        k: statistics.median(
            [await throughput(s, k, 1000, separate_relay=True, separate_projector=True) for _ in range(3)]
        )
        for k in (1, 2)
    }
    from . import celery_peer, raw_loop

    celery = celery_peer.run(s.redis_url)
    loop = statistics.median([await raw_loop.sagas_per_second(s) for _ in range(3)])
    lines += [
        "| what | figure | target |",
        "|---|---:|---:|",
        f"| sagas per second, 1 orchestrator (1,000 submitted at once, median of 3) | {rates[1]:,.0f} | ≥ 500 |",
        f"| sagas per second, 2 orchestrators | {rates[2]:,.0f} | |",
        f"| sagas per second, 1 / 2 orchestrators with the relay in its own process | {apart[1]:,.0f} / "
        f"{apart[2]:,.0f} | |",
        f"| sagas per second, 1 / 2 orchestrators with the relay and the projector each in its own process"
        f" | {both_apart[1]:,.0f} / {both_apart[2]:,.0f} | |",
        f"| Celery chain of 4 no-op tasks, chains per second (same Redis, 1 worker)"
        f" | {celery['chains_per_s']:,.0f} | |",
        f"| ratio, 1 orchestrator / Celery | {rates[1] / celery['chains_per_s']:.1f} times"
        f" | {500 / 86:.1f} times (500 / 86) |",
        f"| hand-written loop, the same Redis and PostgreSQL round trips, one saga at a time (median of 3)"
        f" | {loop:,.0f} | |",
        f"| ratio, 1 orchestrator / hand-written loop | {rates[1] / loop:.1f} times"
        f" | {500 / 270:.1f} times (500 / 270) |",
    ]
    lat = await latency(s, 100)
    lines.append(
        f"| saga end to end, one in flight, p50 / p99 | {percentile(lat, 50):.1f} / {percentile(lat, 99):.1f} ms"
        f" | p50 ≤ 10 ms |"
    )
    lines.append(f"| Celery chain, one in flight, p50 | {celery['p50_ms']:.1f} ms | |")
    lines.append(
        f"| hand-written loop, ms per saga; saga p50 as a multiple of it | {1000 / loop:.1f} ms;"
        f" {percentile(lat, 50) / (1000 / loop):.1f} times | {10 / (1000 / 270):.1f} times (10 / 3.7) |"
    )
    rb = await rollback_time(s)
    lines.append(
        f"| failed step to ROLLED_BACK with 3 compensations, p50 / p99 | {percentile(rb, 50):.1f} / "
        f"{percentile(rb, 99):.1f} ms | ≤ 30 ms |"
    )
    r = await rebuild(s)
    lines.append(
        f"| rebuild a {r['events']:.0f}-event saga without / with snapshot | {r['without snapshot']:.1f} / "
        f"{r['with snapshot']:.2f} ms | ≤ 10 ms with |"
    )
    lines.append(f"| decide() alone, per decision (pure, no I/O) | {decision_cost():.0f} µs | |")
    f = await floor.io_floor(s)
    lines.append(
        f"| this machine: one durable commit, hot / after a 5 ms idle gap | {f['commit hot']:.2f} /"
        f" {f['commit after gap']:.2f} ms | |"
    )
    lines.append(
        f"| this machine: one Redis round trip, hot / after a 5 ms idle gap | {f['redis hot']:.2f} /"
        f" {f['redis after gap']:.2f} ms | |"
    )
    return "\n".join(lines) + "\n"
