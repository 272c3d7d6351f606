"""Where a step's time goes, hop by hop (issue #28): one saga in flight at a time, every
process traced into a real OTLP receiver (tests/support/otlp.py), and each step of each
saga cut at its spans' edges:

- **decide**: the orchestrator's ``saga decide`` span starts (the reply is read and decoded)
  until its ``saga commit`` starts: loading, deciding, planning;
- **commit**: the ``saga commit`` span, one statement to PostgreSQL;
- **to the worker**: the commit's end until the worker's ``consume`` span starts: the relay
  (in the orchestrator, or in its own process woken by the commit's NOTIFY), the ``XADD``,
  Redis waking the worker's blocked read, and the worker's checks before its handler
  (decoding, the contract, its done-mark read);
- **worker**: the simulated worker's handler (it answers at once);
- **back**: the handler's end until the next ``saga decide`` starts: the worker's one
  commit (reply, done mark, ack), Redis waking the orchestrator's read, and its decoding.

Tracing costs time of its own (every span is made and exported), so each layout's
one-in-flight p50 is measured untraced too, in the same run: the hops say where the time
goes, the untraced p50 what it is.
"""

from __future__ import annotations

import asyncio
import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from tests.support.otlp import OtlpReceiver, ReceivedSpan

from .common import Servers, percentile
from .saga import Stack, one_by_one

SAGAS = 60
WARMUP = 5
HOPS = ("decide", "commit", "to the worker", "worker", "back")
LAYOUTS = {"one process": (), "production layout": ("relay", "projector")}


def step_hops(spans: Sequence[ReceivedSpan]) -> list[dict[str, float]]:
    """Each step of one saga's trace, as ms per hop (``HOPS``)."""
    ordered = sorted(spans, key=lambda sp: sp.start_ns)
    decides = [sp for sp in ordered if sp.name == "saga decide"]
    commits = [sp for sp in ordered if sp.name == "saga commit"]
    consumes = [sp for sp in ordered if sp.service == "alphasaga-sim" and sp.name.startswith("consume ")]
    steps: list[dict[str, float]] = []
    for decide in decides:
        commit = next((c for c in commits if c.start_ns >= decide.start_ns), None)
        if commit is None:
            break
        worker = next((w for w in consumes if w.start_ns >= commit.end_ns), None)
        if worker is None:
            break  # the saga's last decision: no step follows
        after = next((d for d in decides if d.start_ns >= worker.end_ns), None)
        if after is None:
            break
        steps.append(
            {
                "decide": (commit.start_ns - decide.start_ns) / 1e6,
                "commit": (commit.end_ns - commit.start_ns) / 1e6,
                "to the worker": (worker.start_ns - commit.end_ns) / 1e6,
                "worker": (worker.end_ns - worker.start_ns) / 1e6,
                "back": (after.start_ns - worker.end_ns) / 1e6,
            }
        )
    return steps


async def _layout(s: Servers, apart: tuple[str, ...], receiver: OtlpReceiver | None) -> list[float]:
    env = {"ALPHASAGA_OTLP_ENDPOINT": receiver.endpoint} if receiver else {}
    stack = Stack(s, 1, {}, "relay" in apart, "projector" in apart, extra_env=env)
    try:
        await stack.ready()
        return await one_by_one(stack.settings, SAGAS, WARMUP)
    finally:
        await stack.cleanup(s)  # stops the processes: their last spans are exported


async def measure(s: Servers) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for layout, apart in LAYOUTS.items():
        untraced = await _layout(s, apart, None)
        with OtlpReceiver() as receiver:
            traced = await _layout(s, apart, receiver)
            await asyncio.sleep(1)
            by_trace: dict[str, list[ReceivedSpan]] = defaultdict(list)
            for sp in receiver.all():
                by_trace[sp.trace_id].append(sp)
        steps = [step for spans in by_trace.values() for step in step_hops(spans)]
        out[layout] = {
            "untraced p50": percentile(untraced, 50),
            "traced p50": percentile(traced, 50),
            "steps": len(steps),
            **{hop: statistics.median(step[hop] for step in steps) if steps else float("nan") for hop in HOPS},
        }
    return out


def markdown(figures: dict[str, Any]) -> str:
    layouts = list(figures)
    lines = [
        f"## Where a step's time goes, hop by hop: one saga in flight, {SAGAS - WARMUP} sagas per layout, traced\n",
        "Medians over every step of every saga (four steps each), in ms.\n",
        "| hop | " + " | ".join(layouts) + " |",
        "|---|" + "---:|" * len(layouts),
    ]
    for hop in HOPS:
        lines.append(f"| {hop} | " + " | ".join(f"{figures[lo][hop]:.2f}" for lo in layouts) + " |")
    lines.append(
        "| **a step** | " + " | ".join(f"**{sum(figures[lo][h] for h in HOPS):.2f}**" for lo in layouts) + " |"
    )
    lines.append("| steps measured | " + " | ".join(str(figures[lo]["steps"]) for lo in layouts) + " |")
    lines.append("| saga p50, traced | " + " | ".join(f"{figures[lo]['traced p50']:.1f}" for lo in layouts) + " |")
    lines.append("| saga p50, untraced | " + " | ".join(f"{figures[lo]['untraced p50']:.1f}" for lo in layouts) + " |")
    return "\n".join(lines) + "\n"
