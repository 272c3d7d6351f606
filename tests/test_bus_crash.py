"""Kill -9 a consumer holding pending messages: another process finishes every one of
them, none twice, within the reclaim idle time plus a few seconds."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from alphasaga_contracts import saga as sg
from alphasaga_shared.config import Settings
from alphasaga_shared.wire import encode, envelope_for
from tests.support.helpers import ROOT, Proc, eventually

WORKER = ROOT / "tests" / "support" / "echo_worker.py"


async def test_kill_9_consumer_pending_messages_are_finished_once_by_a_survivor(
    settings: Settings, env: dict[str, str], redis: aioredis.Redis, tmp_path: Path
) -> None:
    stream = f"{settings.namespace}:cmd:echo"
    replies = f"{settings.namespace}:evt:echo"
    n = 40
    message_ids = [str(uuid.uuid4()) for _ in range(n)]
    for i, mid in enumerate(message_ids):
        msg = sg.CancelSaga(saga_id=uuid.uuid4(), reason=f"m{i}")
        await redis.xadd(stream, encode(envelope_for(msg, correlation_id=str(msg.saga_id), message_id=mid)))  # type: ignore[arg-type]

    common = {
        **env,
        "ECHO_STREAM": stream,
        "ECHO_REPLY_STREAM": replies,
        "ECHO_BATCH": "5",
        "ALPHASAGA_DEAD_CONSUMER_IDLE_MS": "1000",
    }
    # The victim works slowly and hangs after finishing m7's work, before committing
    # its batch (m5..m9): m5, m6 and m7 are done but unacknowledged when it dies.
    victim = Proc.script(
        WORKER,
        {**common, "ALPHASAGA_CONSUMER": "victim", "ECHO_DELAY": "0.05", "ECHO_HANG_ON": "m7"},
        tmp_path / "victim.log",
    )
    await victim.wait_for("FINISHED", timeout=30)
    victim_pending: Any = await redis.xpending_range(stream, "echo", min="-", max="+", count=100, consumername="victim")
    assert len(victim_pending) == 5, "the victim should hold its whole second batch"
    victim.kill9()
    killed_at = time.monotonic()

    survivor = Proc.script(WORKER, {**common, "ALPHASAGA_CONSUMER": "survivor"}, tmp_path / "survivor.log")
    try:
        await survivor.wait_for("ready", timeout=30)

        async def all_replied() -> bool:
            return await redis.xlen(replies) >= n and int((await redis.xpending(stream, "echo"))["pending"]) == 0

        await eventually(all_replied, timeout=settings.reclaim_idle_ms / 1000 + 10)
        recovered_in = time.monotonic() - killed_at

        async def victim_removed() -> bool:
            consumers: Any = await redis.xinfo_consumers(stream, "echo")
            return "victim" not in {c["name"].decode() for c in consumers}

        await eventually(victim_removed, timeout=10)
    finally:
        survivor.stop()

    raw: Any = await redis.xrange(replies)
    causes = Counter(fields[b"causation_id"].decode() for _, fields in raw)
    assert set(causes) == set(message_ids), "every message was answered"
    assert max(causes.values()) == 1, f"a side effect was applied twice: {causes.most_common(3)}"
    by_survivor = [f[b"body"].decode() for _, f in raw if b"survivor" in f[b"body"]]
    assert any('"echo m7 ' in b for b in by_survivor), "the message finished just before the kill was redone once"
    assert recovered_in < settings.reclaim_idle_ms / 1000 + 10
    print(f"recovered {n} messages {recovered_in:.2f}s after the kill")
