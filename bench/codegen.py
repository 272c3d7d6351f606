"""Codegen's CPU per strategy (issue #24): the every-bar look-ahead check of the two
rule-planner strategies on the 5,031 sp500 bars, through a ``Sandbox`` kept as the
service keeps it.

Three figures per strategy, each the median of ``JOBS`` jobs after one to warm up, with
a pause between jobs as the service has between commands:

* **job**: what one strategy costs once the sandbox is ready: the service thread's CPU
  for ``check_no_lookahead`` (rendering aside: validation, variants, reading back,
  comparisons) plus the sandbox's CPU for the job, start-up excluded
  (``SandboxResult.job_cpu_seconds``);
* **start-up**: a sandbox's own start (interpreter, imports, confinement), as the
  sandbox reports it for a one-run job on a sandbox started for it
  (``cpu_seconds - job_cpu_seconds``; bubblewrap's processes are not reaped into ours);
* **per strategy**: what a strategy costs the service in steady state (and the job's
  wall time beside it). Before issue #24
  every job used a runner started for it, so job + start-up; since, one zygote serves
  every job, so the job alone (its start-up is paid once per service, or again after a
  job that had to kill it).

Only the API both designs share is used, so the same section measures main's codegen
too: ``PYTHONPATH=<main>/services/codegen/src python -m bench codegen`` (see
docs/benchmarks.md). Needs no servers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

from .common import median_of

DATASET: Final = "sp500"
JOBS: Final = 5
PAUSE_SECONDS: Final = 1.5
TARGET_SECONDS: Final = 1.0


@dataclass(frozen=True)
class StrategyCost:
    family: str
    sandbox: str
    runs: int
    job_s: float
    wall_s: float
    thread_s: float
    sandbox_s: float
    startup_s: float
    zygote: bool

    @property
    def per_strategy_s(self) -> float:
        """Steady state: a runner's start-up per job before issue #24, none since."""
        return self.job_s if self.zygote else self.job_s + self.startup_s


FLAT: Final = (
    "import pandas as pd\n\n\ndef compute_features(bars):\n    return pd.DataFrame(index=bars.index)\n\n\n"
    "def compute_signal(bars, features):\n    return pd.Series(0.0, index=bars.index)\n"
)


def startup_cpu(kind: str, bars: object) -> float:
    """CPU of one sandbox's start, as it reports it, for a job of one trivial run."""
    from alphasaga_codegen.domain import run_strategy

    result = run_strategy(FLAT, bars, mode=kind)  # type: ignore[arg-type]
    return float(result.cpu_seconds - result.job_cpu_seconds)


def measure() -> list[StrategyCost]:
    from alphasaga_codegen.domain import Sandbox, check_no_lookahead, render_strategy, resolve_sandbox
    from alphasaga_contracts.research import ResearchRequest
    from alphasaga_reasoning.domain import measure as measure_bars
    from alphasaga_reasoning.domain import plan_hypothesis
    from alphasaga_reasoning.domain.marketdata import load_builtin

    bars = load_builtin(DATASET)
    measured = measure_bars(bars)
    kind = resolve_sandbox()
    startup = median_of([startup_cpu(kind, bars.iloc[:20]) for _ in range(3)])
    out = []
    for objective in ("trend", "mean_reversion"):
        source = render_strategy(plan_hypothesis(ResearchRequest(dataset=DATASET, objective=objective), measured))
        sandbox = Sandbox(kind)
        report = check_no_lookahead(source, bars, sandbox=sandbox)  # warm-up
        # One output per run: the zygote's results since issue #24 (before, a runner per job).
        zygote = hasattr(report.sandbox, "outputs")
        threads, sandboxes, walls = [], [], []
        for _ in range(JOBS):
            time.sleep(PAUSE_SECONDS)  # between two commands: the sandbox is ready
            begun, started = time.thread_time(), time.perf_counter()
            report = check_no_lookahead(source, bars, sandbox=sandbox)
            threads.append(time.thread_time() - begun)
            walls.append(time.perf_counter() - started)
            sandboxes.append(report.sandbox.job_cpu_seconds)
        sandbox.close()
        out.append(
            StrategyCost(
                family=objective,
                sandbox=report.sandbox.label,
                runs=report.runs,
                job_s=median_of([t + s for t, s in zip(threads, sandboxes, strict=True)]),
                wall_s=median_of(walls),
                thread_s=median_of(threads),
                sandbox_s=median_of(sandboxes),
                startup_s=startup,
                zygote=zygote,
            )
        )
    return out


def markdown(costs: list[StrategyCost]) -> str:
    design = "one zygote per service, a process per run" if costs[0].zygote else "a runner per strategy"
    rows = [
        f"## Codegen: CPU per strategy, every-bar look-ahead check on {DATASET} ({design}; median of {JOBS} jobs)\n",
        "| strategy | sandbox | runs | job: service thread + sandbox | start-up | per strategy | target | wall |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in costs:
        rows.append(
            f"| {c.family} | {c.sandbox} | {c.runs} | {c.job_s:.2f} s ({c.thread_s:.2f} + {c.sandbox_s:.2f}) "
            f"| {c.startup_s:.2f} s | {c.per_strategy_s:.2f} s | ≤ {TARGET_SECONDS:g} s | {c.wall_s:.2f} s |"
        )
    return "\n".join(rows) + "\n"
