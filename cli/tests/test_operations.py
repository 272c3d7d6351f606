"""An operator's day: dead letters (list, show, redrive, purge) and cancel, with the real
orchestrator and simulated workers that answer at once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from alphasaga_shared.config import Settings
from cli.tests.clirunner import alphasaga, assert_one_line_error
from tests.support.helpers import Proc, eventually


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        p.stop()


def submit(env: dict[str, str]) -> str:
    result = alphasaga(env, "submit", "--dataset", "sp500")
    assert result.code == 0, result
    return result.out.strip()


async def test_dlq_redrive_of_a_message_whose_fault_was_fixed_is_processed_and_leaves_the_dlq(
    env: dict[str, str], settings: Settings, redis: aioredis.Redis, tmp_path: Path, procs: list[Proc]
) -> None:
    env = {**env, "ALPHASAGA_DELIVERY_CAP": "2"}
    orchestrator = Proc.module("alphasaga_orchestrator", env, tmp_path / "orchestrator.log")
    faulty = Proc.module("cli.tests.fault_worker", {**env, "FAULT_SERVICES": "codegen"}, tmp_path / "faulty.log")
    procs += [orchestrator, faulty]
    await orchestrator.wait_for("ready", timeout=60)
    await faulty.wait_for("ready", timeout=60)
    saga_id = submit(env)
    dlq = f"{settings.namespace}:cmd:codegen:dlq"

    async def dead_lettered() -> bool:
        return int(await redis.xlen(dlq)) == 1

    await eventually(dead_lettered, timeout=30)
    letters = alphasaga(env, "dlq", "list", "--json").json()
    assert len(letters) == 1
    letter = letters[0]
    assert letter["dlq_stream"] == dlq and letter["source_stream"] == f"{settings.namespace}:cmd:codegen"
    assert letter["type"] == "codegen.GenerateStrategy" and letter["correlation_id"] == saga_id
    assert letter["delivery_count"] == 2 and "model store is read-only" in letter["error"]
    shown = alphasaga(env, "dlq", "show", letter["entry_id"])
    assert "error: RuntimeError: simulated fault in codegen" in shown.out and '"step": "codegen"' in shown.out
    assert alphasaga(env, "status", saga_id, "--json").json()["current_step"] == "codegen"

    faulty.stop()  # the fix is deployed
    fixed = Proc.module("cli.tests.fault_worker", env, tmp_path / "fixed.log")
    procs.append(fixed)
    await fixed.wait_for("ready", timeout=60)
    redriven = alphasaga(env, "dlq", "redrive", letter["entry_id"], "--json").json()
    assert redriven[0]["stream"] == letter["source_stream"]
    assert redriven[0]["message_id"] == letter["message_id"], "the same message, not a new one"
    assert await redis.xlen(dlq) == 0
    watched = alphasaga(env, "watch", saga_id, "--timeout", "60")
    assert watched.code == 0, (watched, orchestrator.text()[-2000:], fixed.text()[-2000:])
    assert watched.out.splitlines()[-1].startswith("COMPLETED")
    assert alphasaga(env, "dlq", "list", "--json").json() == []
    assert alphasaga(env, "replay", saga_id, "--check").code == 0
    # Started without a traceparent: the saga's trace id is its own id, printed with a link.
    trace_id = saga_id.replace("-", "")
    assert alphasaga(env, "status", saga_id, "--json").json()["trace_id"] == trace_id
    replayed = alphasaga({**env, "ALPHASAGA_JAEGER_URL": "http://jaeger.test:16686/"}, "replay", saga_id)
    assert f"trace {trace_id} (http://jaeger.test:16686/trace/{trace_id})" == replayed.out.splitlines()[-1]


async def test_dlq_purge_asks_first_and_deletes_only_what_it_asked_about(
    env: dict[str, str], settings: Settings, redis: aioredis.Redis
) -> None:
    dlq = f"{settings.namespace}:cmd:ml:dlq"
    ids: list[str] = []
    for i in range(3):
        entry_id: Any = await redis.xadd(
            dlq, {"type": "ml.TrainModel", "message_id": f"m{i}", "body": "{}", "dlq_error": "x"}
        )
        ids.append(entry_id.decode())
    declined = alphasaga(env, "dlq", "purge", "--all", stdin="n\n")
    assert_one_line_error(declined, code=1, contains="nothing purged")
    no_answer = alphasaga(env, "dlq", "purge", ids[0])
    assert_one_line_error(no_answer, code=1, contains="nothing purged")
    assert await redis.xlen(dlq) == 3
    assert_one_line_error(alphasaga(env, "dlq", "purge"), contains="give dead-letter entry ids, or --all")
    one = alphasaga(env, "dlq", "purge", ids[0], stdin="y\n")
    assert one.code == 0 and "purged 1" in one.out, one
    assert (
        alphasaga(env, "dlq", "purge", "--all", "--stream", "cmd:ml", "--yes").out.strip() == "purged 2 dead letter(s)"
    )
    assert await redis.xlen(dlq) == 0
    assert_one_line_error(alphasaga(env, "dlq", "show", ids[1]), contains="no dead letter")


async def test_cancel_compensates_a_running_saga(
    env: dict[str, str], settings: Settings, tmp_path: Path, procs: list[Proc]
) -> None:
    import json

    orchestrator = Proc.module("alphasaga_orchestrator", env, tmp_path / "orchestrator.log")
    # ml never answers: the saga waits there until it is cancelled.
    sim = Proc.module(
        "tests.support.sim_workers", {**env, "SIM_CONFIG": json.dumps({"silent": {"ml": [0]}})}, tmp_path / "sim.log"
    )
    procs += [orchestrator, sim]
    await orchestrator.wait_for("ready", timeout=60)
    await sim.wait_for("ready", timeout=60)
    saga_id = submit(env)

    async def in_ml() -> bool:
        status = alphasaga(env, "status", saga_id, "--json")
        return status.code == 0 and status.json()["current_step"] == "ml"

    await eventually(in_ml, timeout=30, interval=0.3)
    cancelled = alphasaga(env, "cancel", saga_id, "--reason", "wrong dates", "--wait", "--timeout", "60")
    assert cancelled.code == 0, (cancelled, orchestrator.text()[-2000:])
    last = cancelled.out.splitlines()[-1]
    assert last.startswith("ROLLED_BACK") and "cancelled: wrong dates" in last, cancelled.out
    assert any(line.split()[:2] == ["codegen", "compensated"] for line in cancelled.out.splitlines())
    assert alphasaga(env, "status", saga_id, "--json").json()["state"] == "ROLLED_BACK"
    again = alphasaga(env, "cancel", saga_id)
    assert_one_line_error(again, contains="already ended ROLLED_BACK")
    assert_one_line_error(alphasaga(env, "cancel", str(uuid.uuid4())), contains="no saga")
