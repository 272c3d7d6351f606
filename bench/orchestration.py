"""Issues #17 and #28: AlphaSaga beside Restate and DBOS in the same run.

Every system runs the same workload, a durable workflow of four no-op steps: 1,000
submitted at once, then 100 one at a time. Rounds are interleaved (each round starts
every system afresh, measures it and stops it before the next), so that a machine that
slows down over the run slows every system alike; the table gives the median of the
rounds and their spread.

CPU per workflow is read from ``/proc`` during the burst: the system's own processes,
plus the whole PostgreSQL and Redis instances for the systems that use them (the
background writers included, since nothing else runs meanwhile). The client that
submits and waits (this process, or h2load as its child) has a column of its own for
every system, so that a peer held back by its load generator shows it (issue #28);
DBOS runs in-process, so its child process counts its own submitting in the system's.
"""

from __future__ import annotations

import asyncio
import math
import os
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from prometheus_client.parser import text_string_to_metric_families

from alphasaga_client import AlphaSaga
from alphasaga_contracts.research import ResearchRequest

from .common import Servers, percentile
from .peers import Peer, PeerUnavailable, client_cpu_seconds, cpu_seconds, create, descendants, unavailable, versions
from .saga import ROOT, Stack, run_to_end

BURST = 1000
ONE_IN_FLIGHT = 100
SETTLE_S = 1.5  # the projector's and the relay's last passes belong to the burst
CPU_BUDGET_MS = 2.5  # issue #28: the whole system's CPU per saga


PRODUCTION = "production layout (relay and projector apart)"


class AlphaSagaSystem:
    """n orchestrators and the simulated workers (which answer at once) as a ``Peer``."""

    uses = ("postgres", "redis")

    def __init__(
        self,
        s: Servers,
        orchestrators: int,
        root: Path | None = None,
        *,
        lever: str = "",
        extra_env: dict[str, str] | None = None,
        apart: tuple[str, ...] = (),
    ) -> None:
        """``lever``, ``extra_env`` and ``apart`` (of "relay" and "projector", those that run
        in processes of their own) name and set one lever of bench/levers.py."""
        self.s = s
        self.orchestrators = orchestrators
        self.root = root
        self.extra_env = extra_env
        self.apart = apart
        self.name = f"AlphaSaga, {orchestrators} orchestrator{'s' if orchestrators > 1 else ''}"
        if root is not None:
            self.name = f"{self.name}, before ({_commit(root)})"
        if lever:
            self.name = f"{self.name}, {lever}"
        self.stack: Stack | None = None

    async def __aenter__(self) -> Self:
        self.stack = Stack(
            self.s,
            self.orchestrators,
            {},
            root=self.root or ROOT,
            metrics=True,
            extra_env=self.extra_env,
            separate_relay="relay" in self.apart,
            separate_projector="projector" in self.apart,
        )
        try:
            await self.stack.ready()
        except BaseException:
            await self.stack.cleanup(self.s)  # a stack that never got ready leaves nothing running
            raise
        await asyncio.sleep(1)  # start-up work (migrations, groups) is not the burst's
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.stack is not None:
            await self.stack.cleanup(self.s)

    async def burst(self, n: int) -> float:
        assert self.stack is not None
        return await self.stack.burst(self.s, n)

    async def one_in_flight(self, n: int, warmup: int = 5) -> list[float]:
        assert self.stack is not None
        times = []
        async with AlphaSaga(self.stack.settings) as client:
            await client.connect(database=False)
            for _ in range(warmup + n):
                started = time.perf_counter()
                await run_to_end(client, ResearchRequest(dataset="sp500"))
                times.append((time.perf_counter() - started) * 1000)
        return times[warmup:]

    def pids(self) -> set[int]:
        assert self.stack is not None
        return descendants(p.pid for p in self.stack.procs)

    async def commits(self) -> tuple[float, float] | None:
        """Commits so far and the inputs they carried, summed over the orchestrators
        (``alphasaga_eventstore_commit_inputs``); None where the code has no such metric."""
        assert self.stack is not None
        count = total = 0.0
        found = False
        for url in self.stack.metrics_urls:
            text = await asyncio.to_thread(_fetch, url)
            for family in text_string_to_metric_families(text):
                if family.name == "alphasaga_eventstore_commit_inputs":
                    found = True
                    for sample in family.samples:
                        if sample.name.endswith("_count"):
                            count += sample.value
                        elif sample.name.endswith("_sum"):
                            total += sample.value
        return (count, total) if found else None


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return str(r.read().decode())


def server_pids(kinds: Sequence[str]) -> set[int]:
    """Every process of the PostgreSQL and/or Redis servers on this machine."""
    found: set[int] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if ("postgres" in kinds and cmdline.startswith("postgres")) or (
            "redis" in kinds and ("redis-server" in cmdline or "valkey" in cmdline)
        ):
            found.add(int(proc.name))
    return found


@dataclass
class Figures:
    """One system's rounds."""

    name: str
    rates: list[float] = field(default_factory=list)
    latencies: list[list[float]] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    client_cpu_ms: list[float] = field(default_factory=list)
    inputs_per_commit: list[float] = field(default_factory=list)  # during the burst
    failures: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(self.rates) if self.rates else float("nan")

    @property
    def p50(self) -> float:
        return statistics.median(percentile(r, 50) for r in self.latencies) if self.latencies else float("nan")

    @property
    def p99(self) -> float:
        return percentile([x for r in self.latencies for x in r], 99)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpu_ms) if self.cpu_ms else float("nan")

    @property
    def client_cpu(self) -> float:
        return statistics.median(self.client_cpu_ms) if self.client_cpu_ms else float("nan")

    @property
    def whole_cpu(self) -> float:
        """The system's processes and its client, per workflow (median of the rounds' sums)."""
        sums = [a + b for a, b in zip(self.cpu_ms, self.client_cpu_ms, strict=True)]
        return statistics.median(sums) if sums else float("nan")


async def one_round(system: Peer, uses: Sequence[str], figures: Figures, latency: bool) -> None:
    async with system:
        if latency:
            figures.latencies.append(await system.one_in_flight(ONE_IN_FLIGHT))
        commits = system.commits if isinstance(system, AlphaSagaSystem) else None
        commits_before = await commits() if commits else None
        before, client_before = cpu_seconds(system.pids() | server_pids(uses)), client_cpu_seconds()
        seconds = await system.burst(BURST)
        client = client_cpu_seconds() - client_before
        commits_after = await commits() if commits else None
        if commits_before is not None and commits_after is not None and commits_after[0] > commits_before[0]:
            n, inputs = (a - b for a, b in zip(commits_after, commits_before, strict=True))
            figures.inputs_per_commit.append(inputs / n)
        await asyncio.sleep(SETTLE_S)
        # Listed again: a process started during the burst (a backend, a hypercorn worker)
        # counts too, and one that ended counts in its parent's reaped-children time.
        used = cpu_seconds(system.pids() | server_pids(uses)) - before
    if used < 0:
        raise RuntimeError(f"CPU went backwards ({used:.2f} s): a process left that was not reaped by one read")
    figures.rates.append(BURST / seconds)
    figures.cpu_ms.append(used / BURST * 1000)
    figures.client_cpu_ms.append(client / BURST * 1000)


def _spread(values: Sequence[float], fmt: str) -> str:
    if len(values) < 2:
        return ""
    return f" ({format(min(values), fmt)} to {format(max(values), fmt)})"


def markdown(results: Sequence[Figures], skipped: Sequence[str], rounds: int) -> str:
    lines = [
        f"## Orchestration beside the peers (issues #17, #28): {rounds} interleaved rounds\n",
        f"Four no-op durable steps a workflow; {BURST:,} at once, then {ONE_IN_FLIGHT} one at a time."
        " Medians of the rounds, (min to max) of the rounds beside them; p99 over every round's workflows."
        " CPU per workflow during the burst: the system's processes (with PostgreSQL and Redis where it"
        " uses them), and apart, the client that submitted and waited.\n",
        "| system | workflows/s | one in flight p50 / p99 | CPU: system | CPU: client | CPU: both |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for f in results:
        if not f.rates:
            lines.append(f"| {f.name} | failed: {'; '.join(f.failures)[:200]} | | | | |")
            continue
        lat = (
            f"{f.p50:.1f} / {f.p99:.1f} ms{_spread([percentile(r, 50) for r in f.latencies], '.1f')}"
            if f.latencies
            else "—"
        )
        lines.append(
            f"| {f.name} | {f.rate:,.0f}{_spread(f.rates, ',.0f')} | {lat} | {f.cpu:.1f} ms{_spread(f.cpu_ms, '.1f')}"
            f" | {f.client_cpu:.2f} ms{_spread(f.client_cpu_ms, '.2f')} | {f.whole_cpu:.1f} ms |"
        )
    batched = [f for f in results if f.inputs_per_commit]
    if batched:
        lines.append("\nGroup commit: inputs decided on per commit during the burst (one at a time, it is 1):")
        for f in batched:
            mean = statistics.median(f.inputs_per_commit)
            lines.append(f"- {f.name}: {mean:.1f}{_spread(f.inputs_per_commit, '.1f')}")
    for reason in skipped:
        lines.append(f"\n- not measured: {reason}")
    for layout in ("", PRODUCTION):
        title = layout or "one process per orchestrator (the local stack)"
        lines += ["", f"Targets, {title}:", "", *targets(results, layout)]
    measured = {f.name.split(" ")[0] for f in results if f.rates}
    wanted = {
        "restate-sdk": "Restate",
        "hypercorn": "Restate",
        "restate-server": "Restate",
        "aiohttp": "Restate",
        "h2load": "Restate",
        "dbos": "DBOS",
    }
    found = ", ".join(f"{k} {v}" for k, v in versions().items() if wanted.get(k) in measured)
    if found:
        lines.append(f"\nPeers: {found}.")
    return "\n".join(lines) + "\n"


def targets(results: Sequence[Figures], layout: str = "") -> list[str]:
    """Issue #28's four targets for one layout of AlphaSaga (``layout``: the lever its rows'
    names end with), as ratios to the peers of this run. Restate's best is taken over every
    setting and client (the one that flatters us least)."""
    by = {f.name: f for f in results if f.rates}
    tail = f", {layout}" if layout else ""
    one, two = by.get(f"AlphaSaga, 1 orchestrator{tail}"), by.get(f"AlphaSaga, 2 orchestrators{tail}")
    restate = [f for name, f in by.items() if name.startswith("Restate")]
    out = ["| target | this run | met |", "|---|---:|:---:|"]

    def row(what: str, figure: str, ok: bool) -> None:
        out.append(f"| {what} | {figure} | {'yes' if ok else 'no'} |")

    if one is None:
        return ["(AlphaSaga did not run: no targets to compare)"]
    ours = max((f for f in (one, two) if f is not None), key=lambda f: f.rate)
    if restate:
        best = max(restate, key=lambda f: f.rate)
        ratio = ours.rate / best.rate
        row(
            f"sagas/s, the better of 1 and 2 orchestrators, ≥ 1.5x Restate's best ({best.name})",
            f"{ratio:.2f}x",
            ratio >= 1.5,
        )
        fastest = min((f for f in restate if f.latencies), key=lambda f: f.p50, default=None)
        if fastest is not None and one.latencies:
            row(
                f"one in flight p50 ≤ Restate's ({fastest.name}, {fastest.p50:.1f} ms)",
                f"{one.p50:.1f} ms ({one.p50 / fastest.p50:.2f}x)",
                one.p50 <= fastest.p50,
            )
        thriftiest = min(restate, key=lambda f: f.whole_cpu)
        row(
            f"CPU per saga, the whole system, ≤ Restate's server, SDK service and client"
            f" ({thriftiest.name}, {thriftiest.whole_cpu:.1f} ms)",
            f"{one.cpu:.1f} ms ({one.cpu / thriftiest.whole_cpu:.2f}x)",
            one.cpu <= thriftiest.whole_cpu,
        )
    cpu_ok = math.isfinite(one.cpu) and 0 <= one.cpu <= CPU_BUDGET_MS
    row(f"CPU per saga, the whole system, ≤ {CPU_BUDGET_MS} ms", f"{one.cpu:.1f} ms", cpu_ok)
    if two is not None:
        row("sagas/s with 2 orchestrators ≥ 1.3x with 1", f"{two.rate / one.rate:.2f}x", two.rate >= 1.3 * one.rate)
    dbos = by.get("DBOS Transact")
    if dbos is not None:
        out.append(f"\nAlphaSaga, 1 orchestrator / DBOS: {one.rate / dbos.rate:.1f}x the throughput.")
    return out


def _commit(root: Path) -> str:
    out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or root.name


async def report(s: Servers, rounds: int = 5) -> str:
    """``ALPHASAGA_BENCH_BEFORE``, a checkout of another commit with its own ``.venv``
    (``make sync`` there), adds that code's stack to every round: before and after a
    change, interleaved in one run."""
    systems: list[tuple[Peer, Sequence[str], bool]] = [
        (AlphaSagaSystem(s, 1), AlphaSagaSystem.uses, True),
        (AlphaSagaSystem(s, 2), AlphaSagaSystem.uses, False),
        # Compose's and Kubernetes' layout (docs/decisions/0029).
        (AlphaSagaSystem(s, 1, lever=PRODUCTION, apart=("relay", "projector")), AlphaSagaSystem.uses, True),
        (AlphaSagaSystem(s, 2, lever=PRODUCTION, apart=("relay", "projector")), AlphaSagaSystem.uses, False),
    ]
    before = os.environ.get("ALPHASAGA_BENCH_BEFORE")
    if before:
        root = Path(before).resolve()
        systems[:0] = [
            (AlphaSagaSystem(s, 1, root), AlphaSagaSystem.uses, True),
            (AlphaSagaSystem(s, 2, root), AlphaSagaSystem.uses, False),
        ]
    skipped: list[str] = []
    peer_kinds: list[tuple[str, Sequence[str]]] = [("restate", ()), ("dbos", ("postgres",))]
    for kind, uses in peer_kinds:
        try:
            reason = unavailable(kind)
        except Exception as e:  # an install broken in an unforeseen way skips the peer, no more
            reason = f"{kind}: {type(e).__name__}: {str(e)[:200]}"
        if reason is not None:
            skipped.append(reason)
            continue
        # h2load has no percentiles: one in flight is measured once, by its setting's aiohttp client.
        systems += [(peer, uses, not peer.name.endswith("h2load /run")) for peer in create(kind, s.database_url)]
    results = [Figures(system.name) for system, _, _ in systems]
    for r in range(rounds):
        for (system, system_uses, latency), figures in zip(systems, results, strict=True):
            try:
                await one_round(system, system_uses, figures, latency)
            except PeerUnavailable as e:
                figures.failures.append(str(e))
            except Exception as e:  # one system's failure must not end the others' run
                figures.failures.append(f"{type(e).__name__}: {str(e)[:200]}")
            print(f"round {r + 1}/{rounds}: {figures.name} done", flush=True)
    return markdown(results, skipped, rounds)
