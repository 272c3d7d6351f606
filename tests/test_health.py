"""A running service answers its probes and serves Prometheus metrics, and turns not ready
as soon as it is told to stop."""

from __future__ import annotations

import json
import signal
import socket
import urllib.error
import urllib.request
from pathlib import Path

import redis.asyncio as aioredis

from tests.support.helpers import ROOT, Proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def test_probes_and_metrics_of_a_running_service(env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    proc = Proc.module(
        "alphasaga_orchestrator",
        {**env, "ALPHASAGA_HTTP_PORT": str(port), "ALPHASAGA_HTTP_HOST": "127.0.0.1"},
        tmp_path / "orch.log",
    )
    try:
        await proc.wait_for("alphasaga-orchestrator: ready", timeout=60)
        base = f"http://127.0.0.1:{port}"
        assert get(f"{base}/health/live")[0] == 200
        assert get(f"{base}/health/startup")[0] == 200
        status, body = get(f"{base}/health/ready")
        assert status == 200, body
        assert json.loads(body)["checks"] == {"redis": "ok", "postgres": "ok", "groups": "ok"}
        status, metrics = get(f"{base}/metrics")
        assert status == 200
        assert "alphasaga_published_total" in metrics and "alphasaga_lost_pending_total" in metrics
        # The stream collector read the orchestrator's groups from Redis for this scrape.
        ns = env["ALPHASAGA_NAMESPACE"]
        assert f'alphasaga_stream_lag{{group="orchestrator",stream="{ns}:cmd:orchestrator"}} 0.0' in metrics
        assert f'alphasaga_stream_pending{{group="orchestrator",stream="{ns}:evt:ml"}} 0.0' in metrics
        assert f'alphasaga_dead_letters{{stream="{ns}:cmd:orchestrator"}} 0.0' in metrics
        assert get(f"{base}/nope")[0] == 404
        # A group deleted by hand: nothing would be consumed, so the service is not ready.
        # The service makes a lost group again as soon as its read fails (decisions/0014): on a
        # busy machine it may have done so before we ask, and then the group must be there.
        client = aioredis.from_url(env["ALPHASAGA_REDIS_URL"])
        try:
            await client.xgroup_destroy(f"{ns}:evt:ml", "orchestrator")
            status, body = get(f"{base}/health/ready")
            if status == 200:
                groups = await client.xinfo_groups(f"{ns}:evt:ml")
                assert [g["name"] for g in groups] == [b"orchestrator"], (body, groups)
            else:
                assert status == 503, body
                assert json.loads(body)["checks"]["groups"].startswith("LookupError: no group"), body
        finally:
            await client.aclose()
    finally:
        assert proc.stop() == 0, proc.text()


async def test_readiness_turns_false_as_soon_as_a_stop_begins(env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    release = tmp_path / "release"
    proc = Proc.script(
        ROOT / "tests" / "support" / "held_stop_service.py",
        {
            **env,
            "ALPHASAGA_HTTP_PORT": str(port),
            "ALPHASAGA_HTTP_HOST": "127.0.0.1",
            "HELD_STOP_RELEASE": str(release),
        },
        tmp_path / "svc.log",
    )
    ready = f"http://127.0.0.1:{port}/health/ready"
    try:
        await proc.wait_for("alphasaga-heldstop: ready", timeout=60)
        assert get(ready)[0] == 200
        proc.popen.send_signal(signal.SIGTERM)
        await proc.wait_for("held-stop: stopping, held", timeout=30)
        # The service is still stopping (its job holds on): the probe must already say so.
        status, body = get(ready)
        assert (status, json.loads(body)) == (503, {"status": "draining"}), body
        assert get(f"http://127.0.0.1:{port}/health/live")[0] == 200
    finally:
        release.touch()
        assert proc.stop() == 0, proc.text()


async def test_a_condition_held_past_its_bound_turns_the_probes_and_stops_the_service_with_one_line(
    env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    proc = Proc.module(
        "tests.support.stuck_service",
        {**env, "ALPHASAGA_HTTP_PORT": str(port), "ALPHASAGA_HTTP_HOST": "127.0.0.1", "STUCK_BOUND_S": "3"},
        tmp_path / "stuck.log",
    )
    try:
        await proc.wait_for("alphasaga-stuck: ready", timeout=60)
        base = f"http://127.0.0.1:{port}"
        status, body = get(f"{base}/health/ready")
        assert status == 503 and "waiting for something that never comes" in json.loads(body)["conditions"]["stuck"]
        code = proc.wait_exit(30)
    finally:
        proc.stop()
    assert code == 1, proc.text()
    last = proc.text().strip().splitlines()[-1]
    assert last.startswith("alphasaga-stuck: stuck: waiting for something that never comes for"), proc.text()
