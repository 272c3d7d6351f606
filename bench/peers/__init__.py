"""The peers ``make bench`` measures beside AlphaSaga (issue #17): Restate and DBOS
Transact, each running the same workload, a durable workflow of four no-op steps.

Every peer is an async context manager (``Peer``): entering it starts its servers or
processes and waits until a workflow completes; leaving it stops them and removes
what it made (data dirs, the DBOS database). ``unavailable(kind)`` says in one line
why a kind cannot run here, so that a bench can skip it and go on. ``python -m
bench.peers`` runs each available peer once on its own.

The peer packages (restate-sdk, hypercorn, dbos, aiohttp) are the ``peers`` dependency
group, installed by ``make bench`` only: nothing here imports them at module level.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import socket
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self

KINDS = ("restate", "dbos")
# restate-server comes from the npm registry, into a gitignored folder of the checkout.
ROOT = Path(__file__).resolve().parents[2]
PEERS_DIR = ROOT / ".alphasaga" / "peers"

# Marks the DBOS child's replies on its stdout (bench.peers.dbos_app).
DBOS_REPLY = "@@bench-reply "

_TICKS = os.sysconf("SC_CLK_TCK")
_MODULES = {"restate": ("restate", "hypercorn", "aiohttp"), "dbos": ("dbos", "asyncpg")}


class Peer(Protocol):
    name: str

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def burst(self, n: int) -> float:
        """Submit ``n`` workflows at once; seconds from the first submit to the last completion."""
        ...

    async def one_in_flight(self, n: int, warmup: int = 5) -> list[float]:
        """``warmup`` then ``n`` workflows one after another; each one's ms from submit to result."""
        ...

    def pids(self) -> set[int]:
        """The peer's own processes now (servers, service processes and their children)."""
        ...


class StartedPeer:
    """A peer that is entered by starting it; a start that fails stops what it started."""

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def _start(self) -> None:
        raise NotImplementedError

    async def __aexit__(self, *exc: object) -> None:
        raise NotImplementedError


class PeerUnavailable(RuntimeError):
    """A peer that cannot be installed or started here; its message is one line."""


def unavailable(kind: str) -> str | None:
    """None when ``kind`` ("restate" or "dbos") can run here, else one line saying why.

    For Restate this installs restate-server from the npm registry on first use, into
    ``.alphasaga/peers/restate``; that takes a few seconds once.
    """
    if kind not in _MODULES:
        return f"unknown peer {kind!r} (known: {', '.join(KINDS)})"
    missing = [m for m in _MODULES[kind] if importlib.util.find_spec(m) is None]
    if missing:
        return f"{kind}: Python packages missing ({', '.join(missing)}); `make bench` installs the peers group"
    if kind == "restate":
        from .restate import ensure_server

        found = ensure_server()
        return found if isinstance(found, str) else None
    return None


def create(kind: str, database_url: str) -> list[Peer]:
    """The settings of a kind to measure: Restate with its default partition count
    and with 4 partitions, each driven by every client of ``restate.CLIENTS`` that is
    installed; DBOS on its own database of ``database_url``'s server."""
    if kind == "restate":
        from .restate import CLIENTS, RestatePeer, h2load_unavailable

        clients = [c for c in CLIENTS if c != "h2load" or h2load_unavailable() is None]
        return [RestatePeer(partitions=p, client=c) for p in (None, 4) for c in clients]
    if kind == "dbos":
        from .dbos import DbosPeer

        return [DbosPeer(database_url)]
    raise ValueError(f"unknown peer {kind!r}")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def descendants(roots: Iterable[int]) -> set[int]:
    """``roots`` and every live process below them (hypercorn's workers, for example)."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # ended meanwhile
        children.setdefault(ppid, []).append(int(proc.name))
    found: set[int] = set()
    todo = [p for p in roots if Path(f"/proc/{p}").exists()]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def cpu_seconds(pids: Iterable[int]) -> float:
    """CPU seconds so far of ``pids`` and of the children they have reaped: user and system
    time (fields 14 and 15 of /proc/<pid>/stat) and those of waited-for children (16 and
    17). A process that ends between two readings (a PostgreSQL backend, a hypercorn
    worker) then still counts, in its parent's figure, as long as the parent is read."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile: its parent's reaped-children figure holds its CPU
        total += sum(int(f) for f in fields[11:15])
    return total / _TICKS


def client_cpu_seconds() -> float:
    """CPU seconds so far of the bench process, which is the client of every system
    it drives (its threads included), and of the children it has waited for (h2load)."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


@dataclass(frozen=True)
class PeerResult:
    name: str
    per_second: float  # burst: n / seconds
    p50_ms: float  # one in flight
    p99_ms: float
    cpu_ms: float  # the peer's own processes during the burst, per workflow
    client_cpu_ms: float  # the client driving the burst, per workflow


async def measure(peer: Peer, burst_n: int = 1000, one_n: int = 100, settle: float = 1.0) -> PeerResult:
    """One round on an entered peer: one in flight, then a burst with its CPU.

    The CPU count goes on ``settle`` seconds past the last completion, for the work a
    peer still does for that burst (flushes, clean-up), as bench/cpu.py does for ours.
    """
    latencies = await peer.one_in_flight(one_n)
    before, client_before = cpu_seconds(peer.pids()), client_cpu_seconds()
    seconds = await peer.burst(burst_n)
    client = client_cpu_seconds() - client_before
    await asyncio.sleep(settle)
    used = cpu_seconds(peer.pids()) - before
    return PeerResult(
        name=peer.name,
        per_second=burst_n / seconds,
        p50_ms=float(statistics.median(latencies)),
        p99_ms=float(statistics.quantiles(latencies, n=100, method="inclusive")[98]),
        cpu_ms=used / burst_n * 1000,
        client_cpu_ms=client / burst_n * 1000,
    )


def versions() -> dict[str, str]:
    """The installed peer software, for the bench's report."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for dist in ("restate-sdk", "hypercorn", "dbos"):
        with contextlib.suppress(PackageNotFoundError):
            out[dist] = version(dist)
    if importlib.util.find_spec("aiohttp") is not None:
        from .restate import server_version

        found = server_version()
        if found:
            out["restate-server"] = found
        out["aiohttp"] = version("aiohttp")
    h2load = shutil.which("h2load")
    if h2load is not None:
        import subprocess

        line = subprocess.run([h2load, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        if line:
            out["h2load"] = line.split()[-1]
    return out
