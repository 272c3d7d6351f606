"""publish, tail and the one-line errors, over real Redis and PostgreSQL."""

from __future__ import annotations

import json
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from alphasaga_contracts import saga as sg
from alphasaga_shared.config import Settings
from alphasaga_shared.entries import as_text
from alphasaga_shared.wire import decode, encode, envelope_for
from cli.tests.clirunner import ALPHASAGA, alphasaga, assert_one_line_error
from tests.support.helpers import ROOT, Proc, eventually


async def test_publish_validates_sets_the_headers_and_publishes(
    env: dict[str, str], settings: Settings, redis: aioredis.Redis
) -> None:
    saga_id = str(uuid.uuid4())
    body = json.dumps({"saga_id": saga_id, "reason": "wrong dates"})
    result = alphasaga(
        env, "publish", "cmd:orchestrator", "--type", "orchestrator.CancelSaga", "--data", body, "--json"
    )
    published = result.json()
    stream = settings.streams.commands("orchestrator")
    assert published["stream"] == stream
    entries: Any = await redis.xrange(stream)
    (entry_id, raw), *_ = entries
    assert entry_id.decode() == published["entry_id"]
    received = decode(as_text(raw))  # exactly what a consumer does
    assert isinstance(received.message, sg.CancelSaga)
    assert str(received.message.saga_id) == saga_id and received.message.reason == "wrong dates"
    assert received.correlation_id == saga_id, "the saga id is the correlation id"
    assert received.message_id == published["message_id"]
    assert as_text(raw)["schema"] == "1"


async def test_publish_of_a_message_that_violates_its_contract_is_refused_and_the_stream_is_unchanged(
    env: dict[str, str], settings: Settings, redis: aioredis.Redis, tmp_path: Path
) -> None:
    stream = settings.streams.commands("orchestrator")
    await redis.xadd(stream, {"seed": "1"})  # the stream exists and has one entry
    start = "orchestrator.StartResearch"
    cases = [
        (["--data", '{"request": {"dataset": 42}}'], "violates its contract"),
        (["--data", '{"request": {"dataset": "sp500"}, "colour": "red"}'], "violates its contract"),
        (["--data", '{"request": {"dataset": "sp500", "start": "2018-01-01", "end": "2010-01-01"}}'], "start"),
        (["--data", "{not json"], "not JSON"),
    ]
    for extra, why in cases:
        assert_one_line_error(alphasaga(env, "publish", "cmd:orchestrator", "--type", start, *extra), contains=why)
    refused = alphasaga(env, "publish", "cmd:orchestrator", "--type", "orchestrator.StartRsearch", "--data", "{}")
    assert_one_line_error(refused, contains="did you mean orchestrator.StartResearch")
    wrong_home = alphasaga(
        env, "publish", "cmd:reasoning", "--type", start, "--data", '{"request": {"dataset": "sp500"}}'
    )
    assert_one_line_error(wrong_home, contains="belongs on")
    bad_file = tmp_path / "body.yaml"
    bad_file.write_text("request:\n  dataset: sp500\n  trials: 0\n")
    assert_one_line_error(alphasaga(env, "publish", "cmd:orchestrator", "--type", start, "--data", f"@{bad_file}"))
    assert await redis.xlen(stream) == 1


async def test_tail_sees_every_message_a_consuming_service_also_processes(
    env: dict[str, str], settings: Settings, redis: aioredis.Redis, tmp_path: Path
) -> None:
    stream, replies = f"{settings.namespace}:cmd:echo", f"{settings.namespace}:evt:echo"
    worker = Proc.script(
        ROOT / "tests" / "support" / "echo_worker.py",
        {**env, "ECHO_STREAM": stream, "ECHO_REPLY_STREAM": replies, "ECHO_BATCH": "3"},
        tmp_path / "echo.log",
    )
    n = 30
    out, err = (tmp_path / "tail.out").open("w"), (tmp_path / "tail.err").open("w")
    tail = subprocess.Popen(  # noqa: ASYNC220 -- the test drives a real process on purpose
        [str(ALPHASAGA), "tail", stream, "--count", str(n), "--json"], env=env, stdout=out, stderr=err, cwd=ROOT
    )
    try:
        await worker.wait_for("ready")

        async def tail_ready() -> bool:
            return (tmp_path / "tail.err").read_text().startswith("following")

        await eventually(tail_ready, timeout=30)
        sent = []
        for i in range(n):
            env_ = envelope_for(sg.CancelSaga(saga_id=uuid.uuid4(), reason=f"r{i}"), correlation_id=f"c{i}")
            await redis.xadd(stream, encode(env_))  # type: ignore[arg-type]
            sent.append(env_.message_id)
        assert tail.wait(30) == 0, (tmp_path / "tail.err").read_text()
        seen = [json.loads(line) for line in (tmp_path / "tail.out").read_text().splitlines()]
        assert [s["headers"]["message_id"] for s in seen] == sent
        assert all(s["valid"] and s["headers"]["type"] == "orchestrator.CancelSaga" for s in seen)

        async def all_answered() -> bool:
            return int(await redis.xlen(replies)) == n

        await eventually(all_answered, timeout=30)
        replied: Any = await redis.xrange(replies)
        answered = {as_text(raw)["causation_id"] for _, raw in replied}
        assert answered == set(sent), "the service processed every message tail saw"
        groups = await redis.xinfo_groups(stream)
        assert [g["name"] for g in groups] == [b"echo"], "tail joined no consumer group"
        assert groups[0]["pending"] == 0
        assert len(await redis.xinfo_consumers(stream, "echo")) == 1, "only the service's own consumer"
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()
        out.close()
        err.close()
        worker.stop()


def test_tail_decodes_entries_that_break_the_wire_format(env: dict[str, str], settings: Settings) -> None:
    import redis as sync_redis

    client = sync_redis.Redis.from_url(env["ALPHASAGA_REDIS_URL"])
    stream = f"{settings.namespace}:cmd:orchestrator"
    client.xadd(stream, {"message_id": "m1", "type": "orchestrator.StartResearch", "body": '{"request": {}}'})
    result = alphasaga(env, "tail", "cmd:orchestrator", "--from", "0", "--count", "1")
    client.delete(stream)
    assert result.code == 0, result
    assert "orchestrator.StartResearch id=m1" in result.out
    assert "invalid: orchestrator.StartResearch body violates its contract" in result.out


def test_missing_or_unreachable_servers_are_one_line_and_exit_2(env: dict[str, str]) -> None:
    no_db = {k: v for k, v in env.items() if k != "ALPHASAGA_DATABASE_URL"}
    assert_one_line_error(alphasaga(no_db, "list"), contains="ALPHASAGA_DATABASE_URL is not set")
    no_redis = {k: v for k, v in env.items() if k != "ALPHASAGA_REDIS_URL"}
    assert_one_line_error(alphasaga(no_redis, "tail", "evt:sagas"), contains="ALPHASAGA_REDIS_URL is not set")
    assert_one_line_error(alphasaga(no_redis, "submit"), contains="ALPHASAGA_REDIS_URL is not set")

    dead_redis = {**env, "ALPHASAGA_REDIS_URL": "redis://:secret@127.0.0.1:1/0", "ALPHASAGA_CONNECT_TIMEOUT_S": "2"}
    line = assert_one_line_error(alphasaga(dead_redis, "dlq", "list"), contains="cannot reach Redis at")
    assert "secret" not in line, "passwords are not printed"
    dead_pg = {
        **env,
        "ALPHASAGA_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x",
        "ALPHASAGA_CONNECT_TIMEOUT_S": "2",
    }
    assert_one_line_error(alphasaga(dead_pg, "status", str(uuid.uuid4())), contains="cannot reach PostgreSQL at")
    # A server that takes the connection and never answers: the connect timeout ends the
    # wait, with its reason (without it, the command would hang until the runner kills it).
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        silent_redis = {**env, "ALPHASAGA_REDIS_URL": f"redis://127.0.0.1:{port}/0", "ALPHASAGA_CONNECT_TIMEOUT_S": "1"}
        line = assert_one_line_error(alphasaga(silent_redis, "dlq", "list"), contains="cannot reach Redis at")
        assert "TimeoutError" in line, line
        silent_pg = {
            **env,
            "ALPHASAGA_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/x",
            "ALPHASAGA_CONNECT_TIMEOUT_S": "1",
        }
        line = assert_one_line_error(alphasaga(silent_pg, "list"), contains="cannot reach PostgreSQL at")
        assert "TimeoutError" in line or "timed out" in line, line
    bad_setting = {**env, "ALPHASAGA_DATABASE_SCHEMA": "Not A Schema"}
    assert_one_line_error(alphasaga(bad_setting, "list"), contains="ALPHASAGA_DATABASE_SCHEMA")
