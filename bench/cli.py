"""How fast the ``alphasaga`` command answers: ``--help``, an argument error, and
``status`` against a running stack. Each is a whole process, as a user runs it; medians
of 10. Beside them, in the same run, a bare ``python -c pass`` (the floor: the
interpreter's own start-up)."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from alphasaga_cli.stack import Stack
from alphasaga_client import AlphaSaga
from alphasaga_contracts.campaign import CampaignSpec
from alphasaga_contracts.research import ResearchRequest

from .common import Servers, cleanup, stack_settings

ALPHASAGA = str(Path(sys.executable).parent / "alphasaga")
RUNS = 10


def timed(args: list[str], env: dict[str, str], *, expect: int) -> float:
    """Median seconds of ``RUNS`` runs of ``args`` (after one warm-up run)."""
    times = []
    for i in range(RUNS + 1):
        started = time.perf_counter()
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        took = time.perf_counter() - started
        if done.returncode != expect:
            raise RuntimeError(f"{args} exited {done.returncode}, not {expect}: {done.stderr.strip()}")
        if i:
            times.append(took)
    return statistics.median(times)


def startup(env: dict[str, str] | None = None) -> dict[str, float]:
    """The commands that need no server."""
    env = env or dict(os.environ)
    return {
        "python -c pass (the floor)": timed([sys.executable, "-c", "pass"], env, expect=0),
        "alphasaga --help": timed([ALPHASAGA, "--help"], env, expect=0),
        "alphasaga submit --help": timed([ALPHASAGA, "submit", "--help"], env, expect=0),
        "alphasaga submit --no-such-option (an argument error)": timed(
            [ALPHASAGA, "submit", "--no-such-option"], env, expect=2
        ),
    }


async def status(s: Servers) -> dict[str, float]:
    """``alphasaga status <id>`` of a completed saga, ``alphasaga list`` and ``alphasaga
    campaign status`` of a campaign of two, with the five services running."""
    settings = stack_settings(s, "benchcli")
    stack = Stack(settings, say=lambda _: None)
    stack.start()
    try:
        async with AlphaSaga(settings) as client:
            submitted = await client.submit(ResearchRequest(dataset="sp500"))
            async for _ in client.follow(submitted.saga_id, after=submitted.follow_from, timeout_s=300):
                pass
            campaign = await client.submit_campaign(
                CampaignSpec(datasets=["sp500"], families=["trend_following"], budget=2, concurrency=2)
            )
            while (await client.campaign(campaign.saga_id)).state != "COMPLETED":
                await asyncio.sleep(1)
        env = {**stack.env(), "ALPHASAGA_DATA_DIR": str(settings.data_dir)}
        commands = {
            "alphasaga status (a running stack, a completed saga)": ["status", str(submitted.saga_id)],
            "alphasaga list (4 sagas and a campaign)": ["list"],
            "alphasaga campaign status (a campaign of 2)": ["campaign", "status", str(campaign.saga_id)],
        }
        return {
            what: await asyncio.to_thread(timed, [ALPHASAGA, *args], env, expect=0) for what, args in commands.items()
        }
    finally:
        stack.stop()
        await cleanup(s, settings.namespace, settings.database_schema)


def markdown(times: dict[str, float]) -> str:
    lines = ["## CLI start-up (issue #11): whole processes, median of 10\n", "| command | median | target |"]
    lines.append("|---|---:|---:|")
    targets = {"alphasaga --help": "≤ 0.3 s", "alphasaga status": "< 0.3 s", "alphasaga list": "< 0.3 s"}
    for what, took in times.items():
        target = next((t for k, t in targets.items() if what.startswith(k) and "submit" not in what), "")
        if "argument error" in what:
            target = "≤ 0.3 s"
        lines.append(f"| {what} | {took:.3f} s | {target} |")
    return "\n".join(lines) + "\n"
