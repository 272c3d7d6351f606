"""Issue #28's levers, each measured alone against the same code without it, in
interleaved rounds of one run (the orchestration bench's workload: four no-op steps,
1,000 sagas at once, then 100 one at a time, simulated workers that answer at once).

- **uvloop**: the orchestrator (and the relay and projector when apart) on uvloop's
  event loop (``ALPHASAGA_EVENT_LOOP``); the simulated workers keep asyncio's.
- **projector apart**, and **relay and projector apart**: the read model's projector, and
  the outbox relay with it, in processes of their own instead of inside the orchestrator
  (settings already). The relay apart loses its direct path (decision 0004): the projector
  alone says what the split gives without that cost.

``ALPHASAGA_BENCH_BEFORE``, a checkout of another commit with its own ``.venv`` (``make
sync`` there), measures a lever that is code, not a setting: that commit's stack against
this one's, in one process and in the production layout, with 1 and 2 orchestrators.

CPU per saga counts every process of the stack and the whole PostgreSQL and Redis
servers: run it on a machine with nothing else on them. A lever is kept when it pays
here, and recorded in docs/decisions/ either way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .common import Servers
from .orchestration import AlphaSagaSystem, Figures, one_round

ROUNDS = 3


def systems(s: Servers) -> list[AlphaSagaSystem]:
    before = os.environ.get("ALPHASAGA_BENCH_BEFORE")
    if before:
        root = Path(before).resolve()
        apart = ("relay", "projector")
        return [
            AlphaSagaSystem(s, 1, root, lever="as then"),
            AlphaSagaSystem(s, 1, lever="as today"),
            AlphaSagaSystem(s, 1, root, lever="relay and projector apart", apart=apart),
            AlphaSagaSystem(s, 1, lever="relay and projector apart", apart=apart),
            AlphaSagaSystem(s, 2, root, lever="as then"),
            AlphaSagaSystem(s, 2, lever="as today"),
        ]
    return [
        AlphaSagaSystem(s, 1, lever="as today"),
        AlphaSagaSystem(s, 1, lever="uvloop", extra_env={"ALPHASAGA_EVENT_LOOP": "uvloop"}),
        AlphaSagaSystem(s, 1, lever="projector apart", apart=("projector",)),
        AlphaSagaSystem(s, 1, lever="relay and projector apart", apart=("relay", "projector")),
    ]


def markdown(results: Sequence[Figures], rounds: int) -> str:
    base = results[0]
    lines = [
        f"## Levers of issue #28, each alone: {rounds} interleaved rounds\n",
        "Simulated workers; medians of the rounds. Ratios against the first row.\n",
        "| lever | sagas/s | one in flight p50 | CPU per saga, every process | inputs per commit"
        " | vs today: rate, p50, CPU |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for f in results:
        if not f.rates:
            lines.append(f"| {f.name} | failed: {'; '.join(f.failures)[:200]} | | | | |")
            continue
        batch = f"{sorted(f.inputs_per_commit)[len(f.inputs_per_commit) // 2]:.1f}" if f.inputs_per_commit else "—"
        versus = f"{f.rate / base.rate:.2f}x, {f.p50 / base.p50:.2f}x, {f.cpu / base.cpu:.2f}x" if base.rates else ""
        lines.append(f"| {f.name} | {f.rate:,.0f} | {f.p50:.1f} ms | {f.cpu:.2f} ms | {batch} | {versus} |")
    return "\n".join(lines) + "\n"


async def report(s: Servers, rounds: int = ROUNDS) -> str:
    measured = systems(s)
    results = [Figures(system.name) for system in measured]
    for r in range(rounds):
        for system, figures in zip(measured, results, strict=True):
            try:
                await one_round(system, system.uses, figures, latency=True)
            except Exception as e:  # one lever's failure must not end the others' run
                figures.failures.append(f"{type(e).__name__}: {str(e)[:200]}")
            print(f"round {r + 1}/{rounds}: {figures.name} done", flush=True)
    return markdown(results, rounds)
