"""The CLI's ``publish``, ``tail`` and ``dlq`` on both transports (issue #27), run as an
operator runs them: real ``alphasaga`` processes against real servers, on Redis Streams
and on NATS JetStream, the transport chosen by ``ALPHASAGA_BROKER_URL`` alone.

One test per transport walks the whole path, to keep it to four CLI processes: a ``tail``
following a stream sees what ``publish`` sends; a malformed entry, taken by a consumer,
reaches the dead-letter stream; ``dlq list`` shows it and ``dlq redrive`` puts it back."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence

from alphasaga_shared.bus import open_bus
from alphasaga_shared.config import Settings
from alphasaga_shared.wire import Delivery, Envelope, Outgoing
from cli.tests.clirunner import ALPHASAGA, alphasaga
from tests.support.helpers import ROOT, eventually


async def run(env: dict[str, str], *args: str) -> dict[str, object] | list[dict[str, object]]:
    """One CLI command, off the event loop: the test's own consumer runs on it meanwhile."""
    result = await asyncio.to_thread(alphasaga, env, *args, "--json")
    return result.json()  # type: ignore[no-any-return]


async def test_publish_tail_and_dlq_work_on_the_transport(bus_settings: Settings, bus_env: dict[str, str]) -> None:
    stream = bus_settings.streams.commands("orchestrator")
    saga = str(uuid.uuid4())

    # tail from "now": it must see the entry published after it started, and only that one.
    tail = await asyncio.create_subprocess_exec(
        str(ALPHASAGA),
        *("tail", "cmd:orchestrator", "--count", "1", "--json"),
        env=bus_env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert tail.stderr is not None
        following = (await asyncio.wait_for(tail.stderr.readline(), 60)).decode()
        assert following.startswith("following "), following
        body = json.dumps({"saga_id": saga, "reason": "from the cli"})
        published = await run(bus_env, "publish", "cmd:orchestrator", "-t", "orchestrator.CancelSaga", "-d", body)
        assert isinstance(published, dict) and published["stream"] == stream
        out, err = await asyncio.wait_for(tail.communicate(), 60)
    finally:
        if tail.returncode is None:
            tail.kill()
            await tail.wait()
    assert tail.returncode == 0, err
    (seen,) = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    assert seen["valid"] and seen["stream"] == stream, seen
    assert seen["headers"]["type"] == "orchestrator.CancelSaga"
    assert seen["headers"]["message_id"] == published["message_id"]
    assert seen["entry_id"] == published["entry_id"]
    assert seen["body"]["saga_id"] == saga

    # A malformed entry (no contract fields at all), sent around the CLI as a foreign
    # producer would: the consumer sends it to the dead-letter stream at once.
    async def handle(env: Envelope, d: Delivery) -> Sequence[Outgoing]:
        return []

    log = open_bus(bus_settings, service="producer")  # never started: publishes and reads only
    bus = open_bus(bus_settings, service="orchestrator")
    bus.subscribe(stream, handle)
    await bus.start()
    dlq = bus_settings.streams.dead_letters(stream)
    try:
        try:
            await log.publish_entries([(stream, {"hello": "world"})])
            await eventually(lambda: log.entries(dlq), timeout=30)
        finally:
            await bus.stop()
        letters = await run(bus_env, "dlq", "list")
        assert isinstance(letters, list) and len(letters) == 1, letters
        (letter,) = letters
        assert letter["dlq_stream"] == dlq
        assert letter["source_stream"] == stream
        assert "missing field(s)" in str(letter["error"])

        redriven = await run(bus_env, "dlq", "redrive", "--all")
        assert isinstance(redriven, list) and len(redriven) == 1, redriven
        assert redriven[0]["entry_id"] == letter["entry_id"]
        assert redriven[0]["stream"] == stream
        # Back on its source stream, unchanged, and no longer a dead letter.
        assert await log.entries(dlq) == []
        entries = dict(await log.entries(stream))
        assert entries[str(redriven[0]["new_entry_id"])] == {"hello": "world"}
    finally:
        await log.stop()
