"""Reads beside a running load (issue #22): 200 concurrent ``GET /v1/sagas/{id}`` over two
api processes while sagas are submitted at 300/s, then the latency of one submit at a time
through the API (to its 202, and to the saga's start). Main's code (the commit this tree
branched from, ``before``) and this tree's (``after``) run the same processes, interleaved
in one run, on the same servers: every process of ``before`` imports main's packages
first (``PYTHONPATH``).

Before, every read caught the saga list up with the log under an advisory lock that the
orchestrator's projector also takes; after, a read only reads (the saga's row, or its
events folded in memory while the projector has not got there yet). Before, an API submit
sent the request to Redis and then wrote its owner; after, it writes both in one
PostgreSQL transaction and the relay publishes the request."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import asyncpg
import yaml

from alphasaga_client import AlphaSaga
from alphasaga_contracts.envelope import CORRELATION_ID, TYPE
from alphasaga_contracts.research import ResearchRequest

from .api import _Connection, requests_part
from .common import Servers, cleanup, percentile, stack_settings
from .saga import WORKFLOW

ROOT = Path(__file__).resolve().parents[1]
READERS = 200
API_PROCESSES = 2
READ_S = 30.0  # reads are begun for this long, while the load runs; those under way then end
READ_CAP_S = 60.0  # a read not answered by then is given up, and counted at this
RATE = 300  # sagas submitted per second while the reads run
TICK_S = 0.1
SUBMITS = 100  # one at a time, through the API
ROUNDS = 2
STEP_TIMEOUT_S = 600.0
COMPLETED = "alphasaga_orchestrator.saga:Saga.Completed"
STARTED = "alphasaga_orchestrator.saga:Saga.Started"


@dataclass
class Variant:
    name: str
    root: Path

    @property
    def pythonpath(self) -> str:
        sources = [*sorted(self.root.glob("*/src")), *sorted(self.root.glob("services/*/src")), self.root]
        return os.pathsep.join(str(p) for p in sources)


def main_tree() -> Path:
    """The code this tree branched from main at, as files (``git archive``)."""
    base = subprocess.run(
        ["git", "merge-base", "HEAD", "main"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    archive = subprocess.run(["git", "archive", base], cwd=ROOT, capture_output=True, check=True).stdout
    target = Path(tempfile.mkdtemp(prefix="alphasaga-bench-main-"))
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    """One orchestrator (with its relay and projector), the simulated workers and two api
    processes, all from ``variant``'s code, in a namespace and schema of their own."""

    s: Servers
    variant: Variant
    settings: Any = None
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="alphasaga-bench-reads-")))
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    api_processes: int = API_PROCESSES
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        """``settings`` given beforehand (a schema filled with history) are kept."""
        if self.settings is None:
            self.settings = stack_settings(self.s, "reads")
        workflows = self.tmp / "workflows.yaml"
        workflows.write_text(yaml.safe_dump(WORKFLOW))
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALPHASAGA_")}
        env.update(
            ALPHASAGA_REDIS_URL=self.s.redis_url,
            ALPHASAGA_DATABASE_URL=self.s.database_url,
            ALPHASAGA_NAMESPACE=self.settings.namespace,
            ALPHASAGA_DATABASE_SCHEMA=self.settings.database_schema,
            ALPHASAGA_WORKFLOWS=str(workflows),
            ALPHASAGA_LOG_LEVEL="WARNING",
            ALPHASAGA_API_HOST="127.0.0.1",
            ALPHASAGA_API_SUBMIT_PER_MINUTE="1000000",
            ALPHASAGA_API_SUBMIT_IP_PER_MINUTE="1000000",
            PYTHONPATH=self.variant.pythonpath,
            SIM_CONFIG="{}",
        )
        self.env = env
        self._spawn("alphasaga_orchestrator", "orchestrator", env)
        self._spawn("tests.support.sim_workers", "sim", env)
        for n in range(self.api_processes):
            port = _free_port()
            self._spawn("alphasaga_api", f"api{n}", {**env, "ALPHASAGA_API_PORT": str(port)})
            self.urls.append(f"http://127.0.0.1:{port}")

    def stop_orchestrator(self) -> None:
        """Stop the orchestrator (the first process), for what it does at start to be
        measured; ``start_orchestrator`` starts it again."""
        first = self.procs.pop(0)
        first.terminate()
        first.wait(30)

    def start_orchestrator(self) -> subprocess.Popen[bytes]:
        self._spawn("alphasaga_orchestrator", "orchestrator-again", self.env)
        self.procs.insert(0, self.procs.pop())
        return self.procs[0]

    def _spawn(self, module: str, name: str, env: dict[str, str]) -> None:
        log = (self.tmp / f"{name}.log").open("wb")
        self.procs.append(
            subprocess.Popen(
                [sys.executable, "-m", module], env=env, cwd=self.variant.root, stdout=log, stderr=subprocess.STDOUT
            )
        )

    async def ready(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            logs = [p.read_text(errors="replace") for p in sorted(self.tmp.glob("*.log"))]
            if sum("ready" in text for text in logs) >= len(self.procs):
                return
            await asyncio.sleep(0.2)
        tails = "".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(self.tmp.glob("*.log")))
        raise RuntimeError(f"{self.variant.name}: the stack was not ready within 120 s:\n{tails}")

    async def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.settings is not None:
            await cleanup(self.s, self.settings.namespace, self.settings.database_schema)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _read_part(url: str, key: str, paths: list[str], seconds: float, concurrency: int) -> list[float]:
    """One load process's share: ``concurrency`` keep-alive connections to one api process,
    reading ``paths`` in turn for ``seconds``."""
    host = url.removeprefix("http://").split(":")[0]
    heads = [
        f"GET {p} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\nContent-Length: 0\r\n\r\n".encode()
        for p in paths
    ]
    return requests_part(url, heads, b"", sys.maxsize, concurrency, seconds, READ_CAP_S)


async def reads(urls: list[str], key: str, paths: list[str], seconds: float) -> dict[str, float]:
    """Reads by ``READERS`` clients at once for ``seconds``, spread over the api processes,
    from a load process each (so that the load generator is not what is measured)."""
    share = READERS // len(urls)
    begun = time.perf_counter()
    async with asyncio.timeout(STEP_TIMEOUT_S):
        parts = await asyncio.gather(*(_load_process(url, key, paths, seconds, share) for url in urls))
    latencies = [x for part in parts for x in part]
    answered = [x for x in latencies if x < READ_CAP_S]
    took = time.perf_counter() - begun
    return {
        "per_s": len(answered) / took,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "given_up": float(len(latencies) - len(answered)),
        "begun": float(len(latencies)),
    }


async def _load_process(url: str, key: str, paths: list[str], seconds: float, concurrency: int) -> list[float]:
    """``python -m bench.reads``: one load process (below), its latencies as JSON."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.reads",
        url,
        key,
        str(seconds),
        str(concurrency),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate(json.dumps(paths).encode())
    if proc.returncode != 0:
        raise RuntimeError(f"a load process ended with {proc.returncode}")
    latencies: list[float] = json.loads(out)
    return latencies


class Load:
    """Sagas submitted at ``RATE`` per second, straight to Redis (the same path in both)."""

    def __init__(self, client: AlphaSaga) -> None:
        self.client = client
        self.submitted: list[uuid.UUID] = []
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def _run(self) -> None:
        per_tick = int(RATE * TICK_S)
        next_at = time.perf_counter()
        while not self._stopping.is_set():
            done = await self.client.submit_many([ResearchRequest(dataset="sp500")] * per_tick)
            self.submitted.extend(s.saga_id for s in done)
            next_at += TICK_S
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop after the batch under way: a cancel that lands inside redis-py's pipeline
        is not always passed on, and the task would then run on."""
        self._stopping.set()
        if self._task is not None:
            await self._task


class Counts:
    """Sagas started and completed, read on a connection of the bench's own."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    @classmethod
    async def open(cls, s: Servers, schema: str) -> Counts:
        return cls(await asyncpg.connect(s.database_url, server_settings={"search_path": schema}))

    async def completed(self) -> int:
        return int(await self.conn.fetchval("SELECT count(*) FROM events WHERE type = $1", COMPLETED))

    async def started_last(self, n: int = 50) -> list[str]:
        """The sagas started last (most of them still running)."""
        rows = await self.conn.fetch(
            "SELECT stream_id FROM events WHERE type = $1 ORDER BY global_position DESC LIMIT $2", STARTED, n
        )
        return [r["stream_id"].removeprefix("saga-") for r in rows]

    async def drained(self, submitted: int) -> None:
        """Until every saga submitted has completed: a submit measured alone waits for none."""
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while (done := await self.completed()) < submitted:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{done} of {submitted} sagas completed after {STEP_TIMEOUT_S:.0f} s")
            await asyncio.sleep(1)


async def submits(client: AlphaSaga, url: str, key: str) -> dict[str, float]:
    """One submit at a time through the api: to its 202, and to its SagaStarted on the
    lifecycle stream."""
    host, port = url.removeprefix("http://").split(":")
    body = b'{"dataset": "sp500"}'
    head = (
        f"POST /v1/research HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    connection = _Connection(*await asyncio.open_connection(host, int(port)))
    redis = await client.redis()
    stream = client.settings.streams.sagas
    accepted, started = [], []
    try:
        for _ in range(SUBMITS):
            cursor = await client.lifecycle_cursor()
            begun = time.perf_counter()
            status = await connection.request(head, body)
            accepted.append(time.perf_counter() - begun)
            if status != 202:
                raise RuntimeError(f"POST /v1/research: {status}")
            await _until_started(redis, stream, cursor, json.loads(connection.body)["saga_id"])
            started.append(time.perf_counter() - begun)
    finally:
        connection.writer.close()
    return {
        "accepted_p50_ms": percentile(accepted, 50) * 1000,
        "accepted_p99_ms": percentile(accepted, 99) * 1000,
        "started_p50_ms": percentile(started, 50) * 1000,
        "started_p99_ms": percentile(started, 99) * 1000,
    }


async def _until_started(redis: Any, stream: str, cursor: str, saga_id: str) -> None:
    """Until the saga's SagaStarted, read from ``cursor`` on."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reply: Any = await redis.xread({stream: cursor}, count=100, block=1000)
        for _, entries in reply:
            for entry_id, fields in entries:
                cursor = entry_id
                started = fields.get(TYPE.encode()) == b"sagas.SagaStarted"
                if started and fields.get(CORRELATION_ID.encode()) == saga_id.encode():
                    return
    raise TimeoutError("no SagaStarted within 30 s")


async def one_round(s: Servers, variant: Variant) -> dict[str, float]:
    stack = Stack(s, variant)
    try:
        stack.start()
        await stack.ready()
        counts = await Counts.open(s, stack.settings.database_schema)
        async with AlphaSaga(stack.settings, pool_size=8) as client:
            _, key = await (await client.accounts()).create_key("bench", "admin")
            warm = await client.submit_many([ResearchRequest(dataset="sp500")] * 50)
            await counts.drained(len(warm))
            out = await _reads_under_load(client, counts, stack.urls, key, [str(w.saga_id) for w in warm])
            _say(f"{variant.name}: {out['per_s']:.0f} reads/s, p99 {out['p99_ms']:.1f} ms; the load drains")
            out.update(await submits(client, stack.urls[0], key))
        await counts.conn.close()
        return out
    finally:
        await stack.stop()


async def _reads_under_load(
    client: AlphaSaga, counts: Counts, urls: list[str], key: str, ended: list[str]
) -> dict[str, float]:
    """The reads, begun while the load runs, and the sagas completed per second meanwhile;
    then the load stops (reads still under way end after it) and what it submitted drains."""
    load = Load(client)
    load.start()
    try:
        await asyncio.sleep(3)  # the load settles
        # Half the reads find sagas that have ended, half sagas just started.
        paths = [f"/v1/sagas/{saga_id}" for saga_id in [*ended, *await counts.started_last()]]
        reading = asyncio.create_task(reads(urls, key, paths, READ_S))
        done_before, begun = await counts.completed(), time.perf_counter()
        await asyncio.sleep(READ_S)
        sagas_per_s = (await counts.completed() - done_before) / (time.perf_counter() - begun)
    finally:
        await load.stop()
    out = await reading
    out["sagas_per_s"] = sagas_per_s
    await counts.drained(len(ended) + len(load.submitted))
    return out


def _say(line: str) -> None:
    print(f"bench reads: {line}", file=sys.stderr, flush=True)


async def measure(s: Servers) -> dict[str, list[dict[str, float]]]:
    before = main_tree()
    variants = [Variant("before (main)", before), Variant("after (this tree)", ROOT)]
    results: dict[str, list[dict[str, float]]] = {v.name: [] for v in variants}
    try:
        for n in range(ROUNDS):
            for v in variants:
                _say(f"round {n + 1}: {v.name}")
                results[v.name].append(await one_round(s, v))
    finally:
        shutil.rmtree(before, ignore_errors=True)
    return results


def markdown(results: dict[str, list[dict[str, float]]]) -> str:
    lines = [
        f"## Reads beside {RATE} sagas/s, and a submit through the API (issue #22): {READERS} concurrent"
        f" `GET /v1/sagas/{{id}}` over {API_PROCESSES} api processes, begun for {READ_S:.0f} s (one not answered"
        f" in {READ_CAP_S:.0f} s is given up; reads/s counts those answered); then {SUBMITS} submits one at a time."
        f" Before and after interleaved, {ROUNDS} rounds each\n",
        "| code | round | reads/s | read p50 | read p99 | sagas/s during reads"
        " | submit 202 p50 / p99 | submit to SagaStarted p50 / p99 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rounds in results.items():
        for n, r in enumerate(rounds, start=1):
            p99 = (
                f"≥ {READ_CAP_S:.0f} s ({r['given_up']:.0f} of {r['begun']:.0f} given up)"
                if r["given_up"]
                else f"{r['p99_ms']:.1f} ms"
            )
            lines.append(
                f"| {name} | {n} | {r['per_s']:,.0f} | {r['p50_ms']:.1f} ms | {p99}"
                f" | {r['sagas_per_s']:,.0f} | {r['accepted_p50_ms']:.1f} / {r['accepted_p99_ms']:.1f} ms"
                f" | {r['started_p50_ms']:.1f} / {r['started_p99_ms']:.1f} ms |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # a load process: the paths on stdin, the latencies on stdout
    url_, key_, seconds_, concurrency_ = sys.argv[1:5]
    print(json.dumps(_read_part(url_, key_, json.loads(sys.stdin.read()), float(seconds_), int(concurrency_))))
