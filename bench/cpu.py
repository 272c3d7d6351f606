"""Where the CPU goes: CPU seconds per saga of each process group (orchestrator, the
simulated workers, PostgreSQL, Redis, and the projector or relay when they run apart)
while one orchestrator drives 2,000 sagas submitted at once. Reads ``/proc`` (Linux),
so PostgreSQL and Redis must run on this machine. The targets of issue #3 need 500
sagas/s on 2 cores: at most 4 ms of CPU per saga, all processes together."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from .common import Servers
from .saga import Stack

_TICKS = os.sysconf("SC_CLK_TCK")
BUDGET_MS = 2 * 1000 / 500  # CPU ms per saga at 500 sagas/s on 2 cores


def _group(cmdline: str) -> str | None:
    if "alphasaga_orchestrator.projection" in cmdline:
        return "projector"
    if "alphasaga_orchestrator" in cmdline:
        return "orchestrator"
    if "alphasaga_shared.outbox" in cmdline:
        return "relay"
    if "sim_workers" in cmdline:
        return "simulated workers"
    if cmdline.startswith("postgres"):
        return "PostgreSQL"
    if "redis-server" in cmdline or "valkey" in cmdline:
        return "Redis"
    return None


def cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) so far of every process in a known group."""
    out: dict[str, float] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        group = _group(cmdline)
        if group is not None:
            # With the children it reaped: a backend that ends during a run still counts.
            out[group] = out.get(group, 0.0) + sum(int(f) for f in fields[11:15]) / _TICKS
    return out


async def budget(s: Servers, n: int = 2000, *, separate_projector: bool = False) -> dict[str, Any]:
    stack = Stack(s, 1, {}, separate_projector=separate_projector)
    try:
        await stack.ready()
        await asyncio.sleep(1)  # start-up work done
        before = cpu_seconds()
        elapsed = await stack.burst(s, n)
        await asyncio.sleep(1.5)  # the projector's last passes belong to this run
        after = cpu_seconds()
        per_saga_ms = {g: (after[g] - before.get(g, 0.0)) / n * 1000 for g in after}
        return {"rate": n / elapsed, "elapsed": elapsed, "ms_per_saga": per_saga_ms}
    finally:
        await stack.cleanup(s)


async def report(s: Servers) -> str:
    lines = ["## Where the CPU goes (1 orchestrator, 2,000 sagas at once)\n"]
    for apart in (False, True):
        b = await budget(s, separate_projector=apart)
        label = "projector in its own process" if apart else "projector inside the orchestrator"
        lines += [f"{label}: {b['rate']:,.0f} sagas/s\n", "| process | CPU per saga | share of a core |"]
        lines.append("|---|---:|---:|")
        total = 0.0
        for group, ms in sorted(b["ms_per_saga"].items(), key=lambda kv: -kv[1]):
            total += ms
            lines.append(f"| {group} | {ms:.2f} ms | {ms * b['rate'] / 1000:.0%} |")
        servers_ms = sum(b["ms_per_saga"].get(g, 0.0) for g in ("PostgreSQL", "Redis"))
        lines += [
            f"| **all** | **{total:.2f} ms** | |",
            "",
            f"PostgreSQL and Redis alone: {servers_ms:.2f} ms per saga, {servers_ms / BUDGET_MS:.0%} of the"
            f" {BUDGET_MS:.0f} ms that 500 sagas/s leave on 2 cores for all processes.",
            "",
        ]
    return "\n".join(lines)
