"""The explorer's pages with 1,000 sagas in the store (issue #26): the saga list's first
render and a saga's page, each timed to the whole answer on loopback, one request at a
time, beside the JSON the HTTP API gives for the same data in the same run (the reference:
the page's cost over the API's is the ratio).

The sagas are real ones run by the orchestrator with workers that answer at once
(tests/support/sim_workers.py, as in bench/saga.py); the api is a real uvicorn process on
the same servers."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time

import httpx

from alphasaga_client import AlphaSaga, SagaFilter

from .common import Servers, percentile
from .saga import Stack

SAGAS = 1000
REQUESTS = 50
WARM_UP = 5
READY_S = 120.0


def _start_api(stack: Stack) -> tuple[subprocess.Popen[bytes], str]:
    log = stack.tmp / "api.log"
    env = {**stack.env, "ALPHASAGA_API_PORT": "0", "ALPHASAGA_API_HOST": "127.0.0.1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "alphasaga_api"], env=env, stdout=subprocess.DEVNULL, stderr=log.open("w")
    )
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        found = re.search(r"ready on (http://[\d.]+:\d+)", log.read_text())
        if found:
            return proc, found.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"the api did not start: {log.read_text()[-2000:]}")


def _timed(client: httpx.Client, path: str) -> float:
    """p50 in ms of ``REQUESTS`` GETs of ``path``, one at a time, after a warm-up."""
    times = []
    for n in range(WARM_UP + REQUESTS):
        begun = time.perf_counter()
        r = client.get(path)
        took = (time.perf_counter() - begun) * 1000
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        if n >= WARM_UP:
            times.append(took)
    return percentile(times, 50)


def _pages(url: str, key: str, saga_id: str) -> dict[str, float]:
    """Each page as a signed-in browser gets it, and the API's JSON for the same data."""
    with (
        httpx.Client(base_url=url, timeout=60) as browser,
        httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {key}"}) as caller,
    ):
        signed = browser.post("/explorer/login", data={"api_key": key, "next": "/explorer/"})
        assert signed.status_code == 303 and browser.cookies, signed.text[:300]
        return {
            "list page": _timed(browser, "/explorer/"),
            "list JSON": _timed(caller, "/v1/sagas?limit=50"),
            "saga page": _timed(browser, f"/explorer/sagas/{saga_id}"),
            "saga JSON": _timed(caller, f"/v1/sagas/{saga_id}"),
        }


async def measure(s: Servers) -> dict[str, float]:
    stack = Stack(s, 1, {})
    api = None
    try:
        await stack.ready()
        await stack.burst(s, SAGAS)
        api, url = _start_api(stack)
        async with AlphaSaga(stack.settings) as client:
            _, key = await (await client.accounts()).create_key("bench explorer", "admin")
            stored = len(await client.sagas(SagaFilter(limit=SAGAS + 10)))
            newest = (await client.sagas(SagaFilter(limit=1)))[0].saga_id
        return {"sagas": float(stored), **await asyncio.to_thread(_pages, url, key, str(newest))}
    finally:
        if api is not None:
            api.terminate()
            api.wait(30)
        await stack.cleanup(s)


def markdown(r: dict[str, float]) -> str:
    lines = [
        f"## The explorer's pages with {r['sagas']:,.0f} sagas in the store (issue #26): p50 of {REQUESTS} requests"
        " one at a time, to the whole answer on loopback\n",
        "| page | p50 | the API's JSON for the same (p50) | ratio |",
        "|---|---:|---:|---:|",
        f"| saga list, first render (`/explorer/`, 50 rows and counts) | {r['list page']:.1f} ms |"
        f" {r['list JSON']:.1f} ms (`/v1/sagas?limit=50`) | {r['list page'] / r['list JSON']:.1f}x |",
        f"| saga page (`/explorer/sagas/{{id}}`) | {r['saga page']:.1f} ms |"
        f" {r['saga JSON']:.1f} ms (`/v1/sagas/{{id}}`) | {r['saga page'] / r['saga JSON']:.1f}x |",
        "",
        "The target is 300 ms for each page (p50). The page does more than the JSON it is set"
        " beside: the list also counts the sagas per state; the saga page also reads the events,"
        " folds the state at the shown version, and reads the artifacts.",
    ]
    return "\n".join(lines) + "\n"
