"""A research campaign of real sagas on the real services (issue #25): its wall time with one
process of each worker service, then with a second of each added, in one run. From the
campaign's own events: its first to its last. Beside it, for reference in the same run, one
research saga alone."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

from alphasaga_cli.stack import Stack as Services
from alphasaga_client import AlphaSaga, CampaignStatus
from alphasaga_contracts import KINDS, SagaState
from alphasaga_contracts import saga as sg
from alphasaga_contracts.campaign import CampaignSpec
from alphasaga_contracts.research import ResearchRequest

from .common import Servers, cleanup, stack_settings

TIMEOUT_S = 1800


async def measure(s: Servers, budget: int = 20, concurrency: int = 8) -> dict[str, dict[str, Any]]:
    settings = stack_settings(s, "benchcmp")
    services = Services(settings, say=lambda _: None)
    services.start(timeout=180)
    extra: list[subprocess.Popen[bytes]] = []
    out: dict[str, dict[str, Any]] = {}
    try:
        async with AlphaSaga(settings) as client:
            out["one research saga alone (reference)"] = {"wall_s": await _one_saga(client)}
            for replicas in (1, 2):
                if replicas == 2:
                    extra = [_second(services, w.value) for w in KINDS.services()]
                    await asyncio.sleep(15)  # their imports; they join the groups as they come up
                spec = CampaignSpec(
                    datasets=["sp500", "nasdaq"],
                    families=["trend_following", "mean_reversion"],
                    budget=budget,
                    concurrency=concurrency,
                    seed=100 * replicas,  # distinct requests in each round
                )
                found = await _campaign(client, spec)
                label = f"campaign of {budget}, concurrency {concurrency}, {replicas} of each worker"
                out[label] = found
    finally:
        for p in extra:
            p.terminate()
            p.wait(20)
        services.stop()
        await cleanup(s, settings.namespace, settings.database_schema)
    return out


def _second(services: Services, name: str) -> subprocess.Popen[bytes]:
    log = (services.log_dir / f"{name}-2.log").open("wb")
    return subprocess.Popen([sys.executable, "-m", f"alphasaga_{name}"], env=services.env(), stdout=log, stderr=log)


async def _one_saga(client: AlphaSaga) -> float:
    submitted = await client.submit(ResearchRequest(dataset="sp500", seed=99))
    ends = [u.event async for u in client.follow(submitted.saga_id, after=submitted.follow_from, timeout_s=600)]
    assert isinstance(ends[-1], sg.SagaCompleted), ends[-1]
    rows = await client.events(submitted.saga_id)
    return (rows[-1].recorded_at - rows[0].recorded_at).total_seconds()


async def _campaign(client: AlphaSaga, spec: CampaignSpec) -> dict[str, Any]:
    submitted = await client.submit_campaign(spec)
    deadline = time.monotonic() + TIMEOUT_S
    found: CampaignStatus | None = None
    while found is None or not SagaState(found.state).terminal:
        if time.monotonic() > deadline:
            raise TimeoutError(f"campaign {submitted.saga_id} did not end: {found}")
        await asyncio.sleep(1.0)
        try:
            found = await client.campaign(submitted.saga_id)
        except Exception:  # not started yet
            found = None
    rows = await client.events(submitted.saga_id)
    wall = (rows[-1].recorded_at - rows[0].recorded_at).total_seconds()
    return {
        "wall_s": wall,
        "state": found.state,
        "done": found.done,
        "failed": found.failed,
        "trials": found.measured.trials,
        "per_minute": 60 * spec.budget / wall,
        "violations": len((await client.check(submitted.saga_id)).violations),
    }


def markdown(r: dict[str, dict[str, Any]]) -> str:
    lines = [
        "## A campaign of real research sagas over sp500 and nasdaq (issue #25)\n",
        "Wall time from the campaign's first event to its last (the report included).\n",
        "| what | wall time | children done / failed | sagas per minute | trials counted | checker |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, m in r.items():
        if "state" not in m:
            lines.append(f"| {name} | {m['wall_s']:.1f} s | | | | |")
            continue
        ok = "clean" if m["violations"] == 0 else f"{m['violations']} problems"
        lines.append(
            f"| {name} ({m['state']}) | {m['wall_s']:.1f} s | {m['done']} / {m['failed']} | "
            f"{m['per_minute']:.1f} | {m['trials']} | {ok} |"
        )
    return "\n".join(lines) + "\n"
