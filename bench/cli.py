"""How fast the ``alphasaga`` command answers (issues #11 and #25): ``--help``, an
argument error, ``status`` and ``list`` against a running stack, and ``submit``. Each is a
whole process, as a script runs it; medians of 10, wall time and the process's CPU time
(user and system: on a loaded machine it moves far less than the wall time). Beside them,
in the same run, two references: a bare ``python -c pass`` (the interpreter's own start-up)
and ``python -c 'import redis, asyncpg'`` (the two drivers a status needs, nothing of ours).
The load average is printed with the figures: under load, read the ratios."""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from alphasaga_cli.stack import Stack
from alphasaga_client import AlphaSaga
from alphasaga_contracts.campaign import CampaignSpec
from alphasaga_contracts.research import ResearchRequest
from alphasaga_shared.config import Settings
from alphasaga_shared.errors import NotFound

from .common import Servers, cleanup, stack_settings

ALPHASAGA = str(Path(sys.executable).parent / "alphasaga")
RUNS = 10
# Issue #25: status and list under this, wall time, for scripting a campaign by hand.
TARGET_S = 0.3
DRIVERS = "python -c 'import redis, asyncpg' (the drivers alone)"


@dataclass(frozen=True, slots=True)
class Timing:
    wall: float
    cpu: float


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def timed(args: list[str], env: dict[str, str], *, expect: int) -> Timing:
    """Medians of ``RUNS`` runs of ``args`` (after one warm-up run)."""
    walls, cpus = [], []
    for i in range(RUNS + 1):
        cpu, started = _children_cpu(), time.perf_counter()
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        took, used = time.perf_counter() - started, _children_cpu() - cpu
        if done.returncode != expect:
            raise RuntimeError(f"{args} exited {done.returncode}, not {expect}: {done.stderr.strip()}")
        if i:
            walls.append(took)
            cpus.append(used)
    return Timing(statistics.median(walls), statistics.median(cpus))


def startup(env: dict[str, str] | None = None) -> dict[str, Timing]:
    """The references, and the commands that need no server."""
    env = env or dict(os.environ)
    return {
        "python -c pass (the floor)": timed([sys.executable, "-c", "pass"], env, expect=0),
        DRIVERS: timed([sys.executable, "-c", "import redis, asyncpg"], env, expect=0),
        "alphasaga --help": timed([ALPHASAGA, "--help"], env, expect=0),
        "alphasaga submit --help": timed([ALPHASAGA, "submit", "--help"], env, expect=0),
        "alphasaga submit --no-such-option (an argument error)": timed(
            [ALPHASAGA, "submit", "--no-such-option"], env, expect=2
        ),
    }


async def status(s: Servers) -> dict[str, Timing]:
    """``alphasaga status <id>`` of a completed saga, ``alphasaga list`` and ``alphasaga
    campaign status`` of a campaign of two, with the five services running; then, the
    services stopped, ``alphasaga submit`` (it records the request in PostgreSQL and
    returns: no service needs to run) and the status of a saga so submitted, which has not
    ended (its status also reads Redis)."""
    settings = stack_settings(s, "benchcli")
    stack = Stack(settings, say=lambda _: None)
    try:
        stack.start()
        try:
            times, env = await _reads(stack, settings)
        finally:
            stack.stop()
        times["alphasaga submit (recorded, no --wait)"] = await asyncio.to_thread(
            timed, [ALPHASAGA, "submit", "--dataset", "sp500"], env, expect=0
        )
        # A saga that has not ended: its status also reads what services hold of it, in Redis.
        pending = await asyncio.to_thread(
            subprocess.run, [ALPHASAGA, "submit", "--dataset", "sp500"], env=env, capture_output=True, text=True
        )
        times["alphasaga status --json (a saga not ended: PENDING)"] = await asyncio.to_thread(
            timed, [ALPHASAGA, "status", pending.stdout.split()[-1], "--json"], env, expect=0
        )
        return times
    finally:
        await cleanup(s, settings.namespace, settings.database_schema)


async def _reads(stack: Stack, settings: Settings) -> tuple[dict[str, Timing], dict[str, str]]:
    """A completed saga and a campaign of two, then the reads of them, timed."""
    async with AlphaSaga(settings) as client:
        submitted = await client.submit(ResearchRequest(dataset="sp500"))
        async for _ in client.follow(submitted.saga_id, after=submitted.follow_from, timeout_s=300):
            pass
        campaign = await client.submit_campaign(
            CampaignSpec(datasets=["sp500"], families=["trend_following"], budget=2, concurrency=2)
        )
        while True:
            try:
                if (await client.campaign(campaign.saga_id)).state == "COMPLETED":
                    break
            except NotFound:  # sent straight to Redis: unknown until the orchestrator has read it
                pass
            await asyncio.sleep(1)
    env = {**stack.env(), "ALPHASAGA_DATA_DIR": str(settings.data_dir)}
    saga = str(submitted.saga_id)
    commands = {
        "alphasaga status (a running stack, a completed saga)": ["status", saga],
        "alphasaga status --json": ["status", saga, "--json"],
        "alphasaga list (4 sagas and a campaign)": ["list"],
        "alphasaga list --json": ["list", "--json"],
        "alphasaga campaign status (a campaign of 2)": ["campaign", "status", str(campaign.saga_id)],
    }
    times = {what: await asyncio.to_thread(timed, [ALPHASAGA, *args], env, expect=0) for what, args in commands.items()}
    return times, env


def _target(what: str) -> str:
    if what.startswith(("alphasaga status", "alphasaga list")):
        return f"< {TARGET_S} s"
    if what.startswith("alphasaga --help") or "argument error" in what or what.startswith("alphasaga submit --help"):
        return f"≤ {TARGET_S} s"
    return ""


def markdown(times: dict[str, Timing], load: tuple[float, float]) -> str:
    lines = [
        f"## CLI start-up (issues #11, #25): whole processes, medians of {RUNS}\n",
        f"Load average (1 min) {load[0]:.1f} at the start, {load[1]:.1f} at the end, on {os.cpu_count()} cores.\n",
        "| command | wall | CPU | CPU / drivers' | target (wall) | met |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    drivers = times.get(DRIVERS)
    for what, t in times.items():
        target = _target(what)
        met = ("yes" if t.wall < TARGET_S else "no") if target else ""
        ratio = f"{t.cpu / drivers.cpu:.2f}" if drivers and drivers.cpu else ""
        lines.append(f"| {what} | {t.wall:.3f} s | {t.cpu:.3f} s | {ratio} | {target} | {met} |")
    return "\n".join(lines) + "\n"
