"""With the default settings, an entry held by a consumer killed with -9 is taken over
within seconds, while a live consumer's long-running entry is never taken from it: it
refreshes what it holds every third of the idle time (a heartbeat)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from alphasaga_contracts import saga as sg
from alphasaga_shared.config import Settings
from alphasaga_shared.wire import encode, envelope_for
from tests.support.helpers import ROOT, Proc, eventually

WORKER = ROOT / "tests" / "support" / "echo_worker.py"
DEFAULTS = Settings.model_fields


def defaults(env: dict[str, str], settings: Settings) -> dict[str, str]:
    """The test's servers and namespace with the bus's default timings (the suite's
    fixtures shorten them)."""
    stream = f"{settings.namespace}:cmd:echo"
    out = {k: v for k, v in env.items() if not k.startswith(("ALPHASAGA_RECLAIM", "ALPHASAGA_BLOCK"))}
    return {**out, "ECHO_STREAM": stream, "ECHO_REPLY_STREAM": f"{settings.namespace}:evt:echo", "ECHO_BATCH": "1"}


async def send(redis: aioredis.Redis, stream: str, reason: str) -> None:
    msg = sg.CancelSaga(saga_id=uuid.uuid4(), reason=reason)
    await redis.xadd(stream, encode(envelope_for(msg, correlation_id=str(msg.saga_id))))  # type: ignore[arg-type]


async def replies(redis: aioredis.Redis, stream: str) -> list[str]:
    raw: Any = await redis.xrange(stream)
    return [fields[b"body"].decode() for _, fields in raw]


async def test_an_entry_held_by_a_killed_consumer_is_taken_over_within_the_default_idle_time(
    settings: Settings, env: dict[str, str], redis: aioredis.Redis, tmp_path: Path
) -> None:
    assert DEFAULTS["reclaim_idle_ms"].default <= 2000, "a killed consumer's entries wait at most 2 s"
    common = defaults(env, settings)
    victim = Proc.script(
        WORKER, {**common, "ALPHASAGA_CONSUMER": "victim", "ECHO_HANG_ON": "m0"}, tmp_path / "victim.log"
    )
    try:
        await victim.wait_for("ready", timeout=60)
        await send(redis, common["ECHO_STREAM"], "m0")
        await victim.wait_for("FINISHED", timeout=30)  # the victim holds m0, unfinished
    except BaseException:
        victim.kill9()
        raise
    survivor = Proc.script(WORKER, {**common, "ALPHASAGA_CONSUMER": "survivor"}, tmp_path / "survivor.log")
    try:
        await survivor.wait_for("ready", timeout=60)
        victim.kill9()

        async def taken_over() -> list[str]:
            return [r for r in await replies(redis, common["ECHO_REPLY_STREAM"]) if "by survivor" in r]

        done = await eventually(taken_over, timeout=15, interval=0.05)
        assert len(done) == 1
        assert "handled m0 delivery 2" in survivor.text()
    finally:
        survivor.stop()


@pytest.mark.parametrize("work_s", [pytest.param(8, id="8s"), pytest.param(60, id="60s", marks=pytest.mark.slow)])
async def test_a_live_consumers_long_handler_is_never_taken_from_it(
    settings: Settings, env: dict[str, str], redis: aioredis.Redis, tmp_path: Path, work_s: int
) -> None:
    common = defaults(env, settings)
    slow = Proc.script(
        WORKER, {**common, "ALPHASAGA_CONSUMER": "slow", "ECHO_DELAY": str(work_s)}, tmp_path / "slow.log"
    )
    other: Proc | None = None
    try:
        await slow.wait_for("ready", timeout=60)
        await send(redis, common["ECHO_STREAM"], "long")

        async def held_by_slow() -> bool:
            held: Any = await redis.xpending_range(common["ECHO_STREAM"], "echo", min="-", max="+", count=10)
            return [h["consumer"] for h in held] == [b"slow"]

        await eventually(held_by_slow, timeout=30)
        other = Proc.script(WORKER, {**common, "ALPHASAGA_CONSUMER": "other"}, tmp_path / "other.log")
        await other.wait_for("ready", timeout=60)

        async def answered() -> list[str]:
            return await replies(redis, common["ECHO_REPLY_STREAM"])

        done = await eventually(answered, timeout=work_s + 30, interval=0.2)
        assert len(done) == 1 and "by slow" in done[0], done
        assert "handled long delivery 1" in slow.text()
        assert "handled" not in other.text() and "reclaimed" not in other.text(), other.text()
    finally:
        slow.stop()
        if other is not None:
            other.stop()
