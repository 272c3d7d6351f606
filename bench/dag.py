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

import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from alphasaga_client import AlphaSaga
from alphasaga_contracts import saga as sg
from alphasaga_contracts.research import ResearchRequest
from alphasaga_orchestrator.decide import Context, Decision, decide
from alphasaga_saga import dag
from alphasaga_saga.workflow import DEFAULT_WORKFLOWS, Workflow
from alphasaga_shared.wire import envelope_for

from .common import Servers, percentile
from .saga import ROOT, Stack, run_to_end

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


# --- research v2 on the real services: the ml branches with one and with two ml processes


async def real(s: Servers, runs: int = 3) -> dict[str, dict[str, float]]:
    """research v1 and v2 on sp500 through the real services, alternating, ``runs`` each
    after a warm-up, first with one ml process, then with a second one added. From each
    saga's events: its wall time, and its ml phase (the first ml command to the last ml
    success)."""
    import subprocess
    import sys

    from alphasaga_cli.stack import Stack as Services

    from .common import cleanup, stack_settings

    settings = stack_settings(s, "benchdag")
    services = Services(settings, say=lambda _: None)
    services.start(timeout=120)
    extra: subprocess.Popen[bytes] | None = None
    out: dict[str, dict[str, float]] = {}
    try:
        async with AlphaSaga(settings) as client:
            await _real_saga(client, 2)  # warm-up: first imports and data loads
            for processes in (1, 2):
                if processes == 2:
                    log = services.log_dir / "ml-2.log"
                    extra = subprocess.Popen(  # noqa: ASYNC220
                        [sys.executable, "-m", "alphasaga_ml"],
                        env=services.env(),
                        stdout=log.open("wb"),
                        stderr=subprocess.STDOUT,
                    )
                    await _ready(log)
                rows: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
                for _ in range(runs):
                    for version in (1, 2):
                        rows[version].append(await _real_saga(client, version))
                for version, timed in rows.items():
                    out[f"v{version}, {processes} ml process{'es' if processes > 1 else ''}"] = {
                        "wall_s": statistics.median(t[0] for t in timed),
                        "ml_s": statistics.median(t[1] for t in timed),
                    }
    finally:
        if extra is not None:
            extra.terminate()
            extra.wait(20)
        services.stop()
        await cleanup(s, settings.namespace, settings.database_schema)
    return out


async def _real_saga(client: AlphaSaga, version: int) -> tuple[float, float]:
    submitted = await client.submit(ResearchRequest(dataset="sp500"), workflow_version=version)
    ends = [u.event async for u in client.follow(submitted.saga_id, after=submitted.follow_from, timeout_s=600)]
    assert isinstance(ends[-1], sg.SagaCompleted), ends[-1]
    rows = await client.events(submitted.saga_id)
    ml = [r for r in rows if r.type.endswith(("StepCommanded", "StepSucceeded")) and r.data["step"].startswith("ml")]
    wall = (rows[-1].recorded_at - rows[0].recorded_at).total_seconds()
    return wall, (ml[-1].recorded_at - ml[0].recorded_at).total_seconds()


async def _ready(log: Path) -> None:
    """Until the process writing ``log`` says it is ready."""
    import asyncio

    for _ in range(600):
        if "alphasaga-ml: ready" in log.read_text(errors="replace"):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the second ml process did not start: {log.read_text()[-2000:]}")


def real_markdown(r: dict[str, dict[str, float]]) -> str:
    lines = [
        "## research v1 and v2 on sp500, the real services (issue #25)\n",
        "Medians of the runs; times from each saga's events (first to last; first ml command to last ml success).\n",
        "| saga, ml processes | wall time | ml phase |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {m['wall_s']:.2f} s | {m['ml_s']:.2f} s |" for name, m in r.items()]
    return "\n".join(lines) + "\n"


# --- decide() on research v1 before and after the DAG engine, in one run --------------


def decide_before_and_after(before: Path, rounds: int = 5) -> dict[str, float]:
    """``bench.saga.decision_cost`` (research v1, µs per decision) in another checkout
    (``before``, with its own .venv) and in this one, rounds interleaved; the medians of
    the rounds, each the least of three passes."""
    import subprocess

    code = "from bench.saga import decision_cost; print(min(decision_cost(2000) for _ in range(3)))"
    runs: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(rounds):
        for label, root in (("before", before), ("after", ROOT)):
            python = root / ".venv" / "bin" / "python"
            done = subprocess.run(
                [str(python), "-c", code],
                cwd=root,
                env={**os.environ, "PYTHONPATH": str(root)},
                capture_output=True,
                text=True,
                check=True,
            )
            runs[label].append(float(done.stdout.strip().splitlines()[-1]))
    return {label: statistics.median(values) for label, values in runs.items()}
