"""DAG overhead against the linear workflow (issue #25): workers that answer at once
(tests/support/sim_workers.py), one orchestrator process, real Redis and PostgreSQL.

research v1 is a chain of 4 steps; research v2 is a DAG of 7 step instances on 5 levels
(reasoning, codegen, ml over two models, a backtest of each, select), so it makes more
decisions and more round trips per saga. The figures: one saga at a time (submit to its
terminal lifecycle event, p50 and p95), a burst of sagas submitted at once (sagas and step
instances per second), and the CPU of ``decide()`` alone per decision. Rounds alternate
v1 and v2 on the same stack, so that a machine that slows down slows both alike.
"""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any

from alphasaga_client import AlphaSaga
from alphasaga_contracts import saga as sg
from alphasaga_contracts.research import ResearchRequest
from alphasaga_orchestrator.decide import Context, Decision, decide
from alphasaga_saga import dag
from alphasaga_saga.workflow import DEFAULT_WORKFLOWS, Workflow
from alphasaga_shared.wire import envelope_for

from .common import Servers, percentile
from .saga import Stack, run_to_end

V1, V2 = DEFAULT_WORKFLOWS.get("research", 1), DEFAULT_WORKFLOWS.get("research", 2)
INSTANCES = {1: 4, 2: 7}
ROUNDS = 3
ONE_AT_A_TIME = 40
BURST = 300


def _no_wait(w: Workflow) -> dict[str, Any]:
    """A workflow's document with long timeouts and retries without backoff."""
    steps = []
    for s in w.steps:
        raw: dict[str, Any] = {
            "name": s.name,
            "kind": s.kind.name,
            "timeout_s": 60,
            "needs": list(w.needs(s.name)),
            "retry": {"max_attempts": 3, "backoff_s": 0},
        }
        if s.fan_out is not None:
            raw["for_each"] = {"in": s.fan_out.over, "as": s.fan_out.as_}
        steps.append(raw)
    return {"name": w.name, "version": w.version, "steps": steps}


WORKFLOWS = {"workflows": [_no_wait(V1), _no_wait(V2)]}


async def _latencies(stack: Stack, version: int, n: int) -> list[float]:
    times = []
    async with AlphaSaga(stack.settings) as client:
        await client.connect(database=False)
        for _ in range(n):
            started = time.perf_counter()
            await run_to_end(client, ResearchRequest(dataset="sp500"), version)
            times.append((time.perf_counter() - started) * 1000)
    return times[3:]  # the first ones warm the caches and connections


async def measure(s: Servers) -> dict[int, dict[str, float]]:
    stack = Stack(s, 1, {}, workflows=WORKFLOWS)
    runs: dict[int, dict[str, list[float]]] = {v: {"latency": [], "burst_s": []} for v in (1, 2)}
    try:
        await stack.ready()
        for _ in range(ROUNDS):
            for version in (1, 2):
                runs[version]["latency"] += await _latencies(stack, version, ONE_AT_A_TIME)
                runs[version]["burst_s"].append(await stack.burst(s, BURST, version))
    finally:
        await stack.cleanup(s)
    out: dict[int, dict[str, float]] = {}
    for version, r in runs.items():
        per_s = BURST / statistics.median(r["burst_s"])
        out[version] = {
            "p50": percentile(r["latency"], 50),
            "p95": percentile(r["latency"], 95),
            "sagas_per_s": per_s,
            "steps_per_s": per_s * INSTANCES[version],
            "decide_us": decide_cost(version),
        }
    return out


def decide_cost(version: int, sagas: int = 400) -> float:
    """CPU of decide() alone, in microseconds per decision, a whole saga each (no I/O);
    the least of five passes."""
    from tests.support import replies

    ctx = Context(DEFAULT_WORKFLOWS)
    workflow = DEFAULT_WORKFLOWS.get("research", version)
    best = float("inf")
    for _ in range(5):
        decisions = 0
        started = time.perf_counter()
        for _ in range(sagas):
            saga_id = uuid.uuid4()
            start = sg.StartResearch(
                saga_id=saga_id, workflow_version=version, request=ResearchRequest(dataset="sp500")
            )
            d = decide(None, envelope_for(start, correlation_id=str(saga_id)), ctx)
            decisions += 1 + _reply_to_all(d, workflow, ctx, replies)
        best = min(best, (time.perf_counter() - started) / decisions * 1e6)
    return best


def _reply_to_all(d: Decision, workflow: Workflow, ctx: Context, replies: Any) -> int:
    """Answer every command as it is sent, until the saga ends; the decisions made."""
    saga, made = d.saga, 0
    assert saga is not None
    pending = [s.message for s in d.sends if hasattr(s.message, "attempt") and hasattr(s.message, "step")]
    while pending:
        saga.collect_events()
        command = pending.pop(0)
        reply = replies.success(workflow.step(command.step).kind.name, saga.saga_id, command.step, command.attempt)
        d = decide(saga, envelope_for(reply, correlation_id="c"), ctx)
        made += 1
        pending += [s.message for s in d.sends if hasattr(s.message, "attempt") and hasattr(s.message, "step")]
    assert str(saga.state) == "COMPLETED", saga.state
    assert dag.all_instances(workflow, saga.planned()) is not None
    return made


def markdown(r: dict[int, dict[str, float]]) -> str:
    lines = [
        "## DAG overhead against the linear workflow, workers that answer at once (issue #25)\n",
        f"One orchestrator; {ROUNDS} rounds alternating v1 and v2; {ONE_AT_A_TIME} sagas one at a time and "
        f"{BURST} at once per round.\n",
        "| workflow | one at a time p50 | p95 | sagas/s (burst, median) | step instances/s | decide() per decision |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for version, name in ((1, "research v1, a chain of 4"), (2, "research v2, a DAG of 7 on 5 levels")):
        m = r[version]
        lines.append(
            f"| {name} | {m['p50']:.1f} ms | {m['p95']:.1f} ms | {m['sagas_per_s']:,.0f} | {m['steps_per_s']:,.0f} "
            f"| {m['decide_us']:.1f} µs |"
        )
    return "\n".join(lines) + "\n"
