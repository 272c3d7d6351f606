"""Restate as a peer: ``restate-server`` (the npm package's binary, run directly so
its pid is the server's) on loopback ports chosen at start, a fresh data dir per
run, fsync on (Restate's default), and the Python SDK service of
``restate_service`` served by hypercorn, registered through the admin API.

A workflow is one call of ``BenchFlow/run`` on the ingress. Three clients drive it,
each a setting of its own in the table (issue #28: the peer must not be held back by
its load generator, and the table shows each client's CPU):

- ``run``: aiohttp, HTTP/1.1 keep-alive, ``POST /BenchFlow/run``, whose response
  arrives once all four steps are journaled and the handler has returned;
- ``send``: aiohttp, ``POST /BenchFlow/run/send`` (accepted once durably enqueued),
  then ``GET /restate/invocation/{id}/attach``, which answers with the result;
- ``h2load``: nghttp2's load generator (C, HTTP/2 with prior knowledge) for the
  burst; one in flight is then aiohttp's ``run``, as h2load gives no percentiles.

httpx over HTTP/2, the client of the first runs, spent about 2.6 ms of CPU a request
and capped Restate on two cores (docs/benchmarks.md, issue #28).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

import aiohttp

from . import PEERS_DIR, ROOT, PeerUnavailable, StartedPeer, descendants, free_port

INSTALL_DIR = PEERS_DIR / "restate"
# The minor release the reference figures were taken with; npm takes its newest patch.
PACKAGE = "@restatedev/restate-server@1.7"
SERVICE_APP = "bench.peers.restate_service:app"
START_TIMEOUT = 60.0
# aiohttp's connections to the ingress. HTTP/1.1 holds one request a connection, so a
# burst has this many in flight (with ``send``, this many attaches); a thousand connects
# at once would overflow the ingress's accept backlog, and the kernel's SYN retries
# (1 s, 3 s, ...) would then be measured instead of Restate.
CONNECTIONS = 256
# h2load: connections and streams per connection (HTTP/2); 8 x 128 holds a burst of
# 1,000 in flight at once.
H2LOAD_CONNECTIONS = 8
H2LOAD_STREAMS = 128
CLIENTS = {
    "run": "aiohttp /run",
    "send": "aiohttp /send + attach",
    "h2load": "h2load /run",
}


def server_binary() -> Path | None:
    """The platform binary the npm package ships (``restate-server-<os>-<arch>``)."""
    for candidate in sorted(INSTALL_DIR.glob("node_modules/@restatedev/restate-server-*/bin/restate-server")):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def ensure_server() -> Path | str:
    """The restate-server binary, installed with npm on first use; else one line why not."""
    found = server_binary()
    if found is not None:
        return found
    npm = shutil.which("npm")
    if npm is None:
        return "restate: npm is not installed, so restate-server cannot be installed (apt-get install npm)"
    INSTALL_DIR.mkdir(parents=True, exist_ok=True)
    print(f"installing {PACKAGE} from the npm registry into {INSTALL_DIR} (once; about 200 MB)", flush=True)
    try:
        # --ignore-scripts: the binary comes in an optional platform package and needs
        # no install script; the scripts there only report downloads.
        done = subprocess.run(
            [npm, "install", "--prefix", str(INSTALL_DIR), "--no-audit", "--no-fund", "--ignore-scripts", PACKAGE],
            capture_output=True,
            text=True,
            timeout=600,
        )
    except subprocess.TimeoutExpired:
        return f"restate: `npm install {PACKAGE}` took over 10 minutes (registry unreachable?)"
    found = server_binary()
    if done.returncode != 0 or found is None:
        why = (done.stderr.strip().splitlines() or ["no binary for this platform"])[-1]
        return f"restate: npm could not install {PACKAGE}: {why}"
    return found


def server_version() -> str | None:
    binary = server_binary()
    if binary is None:
        return None
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30).stdout
    return out.strip().split()[-1] if out.strip() else None


def h2load_unavailable() -> str | None:
    if shutil.which("h2load") is None:
        return "h2load is not installed (Debian's nghttp2-client): Restate runs with aiohttp's clients alone"
    return None


class RestatePeer(StartedPeer):
    def __init__(self, partitions: int | None = None, client: str = "run") -> None:
        """``partitions`` None keeps Restate's default (24 in 1.7); otherwise the
        partition count the fresh cluster is provisioned with. ``client`` is a key of
        ``CLIENTS``."""
        if client not in CLIENTS:
            raise ValueError(f"unknown Restate client {client!r} (known: {', '.join(CLIENTS)})")
        self.partitions = partitions
        self.client = client
        parts = "default partitions" if partitions is None else f"{partitions} partitions"
        self.name = f"Restate ({parts}), {CLIENTS[client]}"
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []
        self._names: dict[int, str] = {}
        self._dir: Path | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ingress = ""
        self._ingress_port = 0
        self._seq = 0

    async def _start(self) -> None:
        binary = ensure_server()
        if isinstance(binary, str):
            raise PeerUnavailable(binary)
        self._dir = Path(tempfile.mkdtemp(prefix="alphasaga-restate-"))
        ingress, admin, fabric, service = (free_port() for _ in range(4))
        env = {
            **os.environ,
            # TCP on loopback only; no unix sockets in the data dir.
            "RESTATE_LISTEN_MODE": "tcp",
            "RESTATE_BIND_IP": "127.0.0.1",
            "RESTATE_BIND_PORT": str(fabric),
            "RESTATE_INGRESS__BIND_PORT": str(ingress),
            "RESTATE_ADMIN__BIND_PORT": str(admin),
            "RESTATE_NODE_NAME": "bench",
            "RESTATE_LOG_FORMAT": "compact",
        }
        if self.partitions is not None:
            # Read only when the cluster is first provisioned: hence a fresh data dir per setting.
            env["RESTATE_DEFAULT_NUM_PARTITIONS"] = str(self.partitions)
        self._spawn([str(binary), "--no-logo", "--base-dir", str(self._dir / "data")], env, "server.log")

        # The SDK speaks HTTP/2 with Restate, one stream per invocation: hypercorn's
        # default of 100 streams a connection and 5 s keep-alive would throttle a burst
        # (the SDK's serving docs give the same settings).
        config = self._dir / "hypercorn.toml"
        config.write_text(
            f'bind = ["127.0.0.1:{service}"]\nworkers = 1\nerrorlog = "-"\nbacklog = 2048\n'
            "h2_max_concurrent_streams = 2147483647\nkeep_alive_max_requests = 2147483647\n"
            "keep_alive_timeout = 2147483647\n"
        )
        self._spawn(
            [sys.executable, "-m", "hypercorn", "--config", str(config), SERVICE_APP],
            {**os.environ, "PYTHONPATH": str(ROOT)},
            "service.log",
        )

        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CONNECTIONS, keepalive_timeout=120),
            timeout=aiohttp.ClientTimeout(total=300.0, connect=60.0),
        )
        self._ingress = f"http://127.0.0.1:{ingress}"
        self._ingress_port = ingress
        await self._until(lambda: self._get(f"http://127.0.0.1:{admin}/health"), "the admin API")
        await self._until(lambda: self._register(f"http://127.0.0.1:{admin}", service), "the deployment registration")
        await self._until(self._one, "a first workflow")

    def _spawn(self, cmd: list[str], env: dict[str, str], log: str) -> None:
        assert self._dir is not None
        out = (self._dir / log).open("wb")
        self._logs.append(out)
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        self._procs.append(proc)
        self._names[proc.pid] = log.removesuffix(".log")

    async def _until(self, attempt: Callable[[], Awaitable[bool]], what: str) -> None:
        """Retry ``attempt`` (an async callable returning True on success) until START_TIMEOUT."""
        deadline = time.monotonic() + START_TIMEOUT
        last = ""
        while time.monotonic() < deadline:
            for p in self._procs:
                if p.poll() is not None:
                    what = self._names[p.pid]
                    raise PeerUnavailable(f"{self.name}: {what} exited ({p.returncode}): {self._tail()}")
            try:
                if await attempt():
                    return
            except (aiohttp.ClientError, TimeoutError) as e:
                last = f"{type(e).__name__} {e}"
            await asyncio.sleep(0.2)
        raise PeerUnavailable(f"{self.name}: no {what} within {START_TIMEOUT:.0f} s ({last or self._tail()})")

    def _tail(self) -> str:
        assert self._dir is not None
        lines: list[str] = []
        for log in ("server.log", "service.log"):
            with contextlib.suppress(OSError):
                lines += (self._dir / log).read_text(errors="replace").strip().splitlines()[-1:]
        return " | ".join(lines)[:300]

    async def _get(self, url: str) -> bool:
        assert self._session is not None
        async with self._session.get(url) as r:
            await r.read()
            return bool(r.status == 200)

    async def _register(self, admin: str, service_port: int) -> bool:
        assert self._session is not None
        body = {"uri": f"http://127.0.0.1:{service_port}"}
        async with self._session.post(f"{admin}/deployments", json=body) as r:
            await r.read()
            return bool(r.status in (200, 201))

    async def _one(self) -> bool:
        """One workflow through ``/run``: True once it returned, False while the
        ingress does not know the service yet."""
        assert self._session is not None
        self._seq += 1
        async with self._session.post(f"{self._ingress}/BenchFlow/run", json=self._seq) as r:
            text = await r.text()
            if r.status == 200:
                return True
        # Until the new deployment reaches the ingress it answers 404; other errors are real.
        if r.status == 404:
            return False
        raise PeerUnavailable(f"{self.name}: a workflow answered {r.status}: {text[:200]}")

    async def _send(self) -> str:
        """Enqueue one workflow; its invocation id."""
        assert self._session is not None
        self._seq += 1
        async with self._session.post(f"{self._ingress}/BenchFlow/run/send", json=self._seq) as r:
            body = await r.json(content_type=None)
            if r.status not in (200, 202):
                raise RuntimeError(f"{self.name}: a send answered {r.status}: {str(body)[:200]}")
        return str(body["invocationId"])

    async def _attach(self, invocation: str) -> None:
        assert self._session is not None
        async with self._session.get(f"{self._ingress}/restate/invocation/{invocation}/attach") as r:
            text = await r.text()
            if r.status != 200:
                raise RuntimeError(f"{self.name}: attach answered {r.status}: {text[:200]}")

    async def burst(self, n: int) -> float:
        started = time.perf_counter()
        if self.client == "h2load":
            return await self._h2load(n)
        if self.client == "send":
            ids = await asyncio.gather(*(self._send() for _ in range(n)))
            await asyncio.gather(*(self._attach(i) for i in ids))
            return time.perf_counter() - started
        # One request a workflow, all at once: each one's response is its completion.
        results = await asyncio.gather(*(self._one() for _ in range(n)))
        elapsed = time.perf_counter() - started
        if not all(results):
            raise RuntimeError(f"{self.name}: {results.count(False)} of {n} workflows were not accepted")
        return elapsed

    async def _h2load(self, n: int) -> float:
        """A burst of ``n`` from h2load, a child process: its CPU is in this process's
        reaped-children time once it has been waited for, which the bench reads."""
        assert self._dir is not None
        body = self._dir / "body.json"
        body.write_text("1")
        cmd = [
            "h2load",
            f"-n{n}",
            f"-c{H2LOAD_CONNECTIONS}",
            f"-m{H2LOAD_STREAMS}",
            f"--data={body}",
            "-H",
            "content-type: application/json",
            f"{self._ingress}/BenchFlow/run",
        ]
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await proc.communicate()
        elapsed = time.perf_counter() - started
        text = out.decode(errors="replace")
        # "requests: 1000 total, 1000 started, 1000 done, 1000 succeeded, 0 failed, ..."
        # and "status codes: 1000 2xx, ...": anything short of n 2xx is a failed burst.
        ok = next((line for line in text.splitlines() if line.startswith("status codes:")), "")
        if proc.returncode != 0 or not ok.split(":", 1)[1].strip().startswith(f"{n} 2xx"):
            raise RuntimeError(f"{self.name}: h2load did not complete {n} workflows: {text[-400:]}")
        return _h2load_seconds(text) or elapsed

    async def one_in_flight(self, n: int, warmup: int = 5) -> list[float]:
        latencies: list[float] = []
        for i in range(warmup + n):
            started = time.perf_counter()
            if not await self._one():
                raise RuntimeError(f"{self.name}: a workflow was not accepted")
            if i >= warmup:
                latencies.append((time.perf_counter() - started) * 1000)
        return latencies

    def pids(self) -> set[int]:
        return descendants(p.pid for p in self._procs if p.poll() is None)

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        # Remembered now: once hypercorn's parent has gone, /proc no longer links its workers to it.
        live = self.pids() - {p.pid for p in self._procs}
        for p in reversed(self._procs):  # the service first: the server may still be calling it
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self._procs):
            try:
                await asyncio.to_thread(p.wait, 30)
            except subprocess.TimeoutExpired:
                p.kill()
                await asyncio.to_thread(p.wait)
        # Hypercorn's workers end with their parent; kill any that a crash left behind.
        for pid in descendants(live):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._procs.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _h2load_seconds(report: str) -> float | None:
    """h2load's own time from its first request to its last response ("finished in
    1.23s, ..." or "... in 850.12ms, ..."), which leaves out its process start."""
    for line in report.splitlines():
        if line.startswith("finished in "):
            figure = line.removeprefix("finished in ").split(",", 1)[0].strip()
            if figure.endswith("ms"):
                return float(figure[:-2]) / 1000
            if figure.endswith("s"):
                return float(figure[:-1])
    return None
