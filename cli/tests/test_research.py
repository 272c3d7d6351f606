"""submit, watch, status, list, replay, events and artifacts against the five real
services (real research on real market data) over real Redis and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from alphasaga_cli.stack import Stack
from alphasaga_saga.aggregate import state_of
from alphasaga_saga.mapper import SagaMapper
from alphasaga_shared.eventstore import EventStore, NewEvent
from cli.tests.clirunner import Result, alphasaga, assert_one_line_error
from conftest import Servers
from tests.support.helpers import running_stack

SAGA_TIMEOUT = "240"


@pytest.fixture(scope="module")
def stack(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(servers.redis_url, servers.database_url, tmp_path_factory.mktemp("stack"), "cli") as s:
        yield s


@pytest.fixture(scope="module")
def cli_env(stack: Stack) -> dict[str, str]:
    return {**stack.env(), "ALPHASAGA_DATA_DIR": str(stack.settings.data_dir)}


@pytest.fixture(scope="module")
def completed(cli_env: dict[str, str]) -> tuple[Result, str]:
    result = alphasaga(
        cli_env, "submit", "--dataset", "sp500", "--start", "2010-01-01", "--wait", "--timeout", SAGA_TIMEOUT
    )
    return result, result.out.splitlines()[0].split()[1]


@pytest.fixture(scope="module")
def rolled_back(cli_env: dict[str, str]) -> tuple[Result, str]:
    # Eight months of data: too few rows for ml's walk-forward training.
    result = alphasaga(
        cli_env,
        "submit",
        "--dataset",
        "sp500",
        "--start",
        "2017-01-01",
        "--end",
        "2017-08-31",
        "--wait",
        "--timeout",
        SAGA_TIMEOUT,
    )
    return result, result.out.splitlines()[0].split()[1]


@pytest.fixture
async def stack_store(stack: Stack) -> AsyncIterator[EventStore]:
    store = await EventStore.connect(stack.database_url, stack.settings.database_schema)
    yield store
    await store.close()


def test_submit_wait_completes_with_exit_0_and_prints_the_verdict(completed: tuple[Result, str]) -> None:
    result, saga_id = completed
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert lines[0] == f"saga {saga_id} submitted"
    for step in ("reasoning", "codegen", "ml", "backtest"):
        assert any(line.split()[:2] == [step, "done"] and "attempt 1" in line for line in lines), (step, result.out)
    assert lines[-1].startswith("COMPLETED in "), result.out
    assert "accepted" in lines[-1] or "rejected" in lines[-1]
    assert "Sharpe" in lines[-1] and "max drawdown" in lines[-1]


def test_submit_wait_of_a_rolled_back_saga_exits_1_with_the_failed_steps_reason(
    rolled_back: tuple[Result, str],
) -> None:
    result, _ = rolled_back
    assert result.code == 1, result
    last = result.out.splitlines()[-1]
    assert last.startswith("ROLLED_BACK"), result.out
    assert "ml failed" in last and "rows" in last, last
    assert any(line.split()[:2] == ["ml", "failed"] for line in result.out.splitlines()), result.out
    assert any(line.split()[:2] == ["codegen", "compensated"] for line in result.out.splitlines()), result.out


def test_submit_json_prints_the_saga_id_and_the_saga_starts(cli_env: dict[str, str]) -> None:
    submitted = alphasaga(cli_env, "submit", "--dataset", "nasdaq", "--start", "2015-01-01", "--json").json()
    saga_id = submitted["saga_id"]
    watched = alphasaga(cli_env, "watch", saga_id[:8], "--json", "--timeout", SAGA_TIMEOUT)
    assert watched.code == 0, watched
    outcome = watched.json()
    assert outcome["saga_id"] == saga_id and outcome["state"] == "COMPLETED"
    assert [s["step"] for s in outcome["steps"]] == ["reasoning", "codegen", "ml", "backtest"]
    assert outcome["verdict"] is not None and "sharpe" in outcome["metrics"]


def test_submit_express_runs_real_research_on_the_express_lanes_and_records_the_lane(cli_env: dict[str, str]) -> None:
    result = alphasaga(
        cli_env,
        *("submit", "--dataset", "ibm", "--priority", "express", "--wait", "--json", "--timeout", SAGA_TIMEOUT),
        timeout=float(SAGA_TIMEOUT) + 30,
    )
    assert result.code == 0, result
    saga_id = json.loads(result.out)["saga_id"]
    first = alphasaga(cli_env, "replay", saga_id, "--to", "1", "--json").json()["events"][0]
    assert first["data"]["priority"] == "express"
    refused = alphasaga(cli_env, "submit", "--dataset", "ibm", "--priority", "urgent")
    assert refused.code != 0 and "urgent" in refused.err


def test_submit_from_a_yaml_file_with_a_flag_on_top(cli_env: dict[str, str], tmp_path: Path) -> None:
    request = tmp_path / "request.yaml"
    request.write_text("dataset: sp500\nstart: 2012-01-01\nobjective: trend\nconstraints:\n  min_sharpe: 0.1\n")
    result = alphasaga(cli_env, "submit", "-f", str(request), "--max-drawdown", "0.5", "--wait", "--json")
    assert result.code in (0, 1), result
    saga_id = json.loads(result.out)["saga_id"]
    first = alphasaga(cli_env, "replay", saga_id, "--to", "1", "--json").json()["events"][0]
    assert first["data"]["request"]["objective"] == "trend"
    assert first["data"]["request"]["constraints"] == {"min_sharpe": 0.1, "max_drawdown": 0.5}


async def test_an_invalid_request_file_is_refused_and_nothing_is_published(
    cli_env: dict[str, str], stack: Stack, tmp_path: Path
) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(stack.redis_url)
    stream = stack.settings.streams.commands("orchestrator")
    before = await client.xlen(stream)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("dataset: [sp500\n")
    assert_one_line_error(alphasaga(cli_env, "submit", "-f", str(bad_yaml)), contains="not valid YAML")
    bad_request = tmp_path / "bad.json"
    bad_request.write_text('{"dataset": "ftse", "start": "2015-13-01"}')
    assert_one_line_error(alphasaga(cli_env, "submit", "-f", str(bad_request)), contains="invalid request in")
    assert_one_line_error(alphasaga(cli_env, "submit", "-f", str(tmp_path / "missing.yaml")), contains="cannot read")
    assert await client.xlen(stream) == before
    await client.aclose()


async def test_replay_prints_every_stored_event_and_ends_in_the_status_state(
    cli_env: dict[str, str], completed: tuple[Result, str], stack_store: EventStore
) -> None:
    _, saga_id = completed
    stored = await stack_store.read_stream(f"saga-{saga_id}")
    replayed = alphasaga(cli_env, "replay", saga_id, "--json").json()
    assert replayed["total_events"] == len(stored) >= 10
    assert [e["number"] for e in replayed["events"]] == list(range(1, len(stored) + 1))
    assert [e["version"] for e in replayed["events"]] == [r.version for r in stored]
    status = alphasaga(cli_env, "status", saga_id, "--json").json()
    assert status["state"] == "COMPLETED" and status["version"] == len(stored)
    assert replayed["events"][-1]["state"] == status["saga_state"]

    human = alphasaga(cli_env, "replay", saga_id)
    headers = [line for line in human.out.splitlines() if line.startswith("#")]
    assert [h.split()[0] for h in headers] == [f"#{n}" for n in range(1, len(stored) + 1)]


async def test_replay_to_3_shows_the_state_after_the_third_event(
    cli_env: dict[str, str], completed: tuple[Result, str], stack_store: EventStore
) -> None:
    _, saga_id = completed
    rows = await stack_store.read_stream(f"saga-{saga_id}")
    expected = state_of(SagaMapper().fold(uuid.UUID(saga_id), rows[:3]))
    replayed = alphasaga(cli_env, "replay", saga_id, "--to", "3", "--json").json()
    assert len(replayed["events"]) == 3
    assert replayed["events"][-1]["state"] == expected
    assert expected["completed"] == ["reasoning"], "after Started, StepCommanded, StepSucceeded"

    # --at the third event's time: the same point (events in one transaction share a time).
    at = rows[2].recorded_at.isoformat()
    by_time = alphasaga(cli_env, "replay", saga_id, "--at", at, "--json").json()["events"]
    assert by_time[-1]["state"] == state_of(
        SagaMapper().fold(uuid.UUID(saga_id), [r for r in rows if r.recorded_at <= rows[2].recorded_at])
    )

    human = alphasaga(cli_env, "replay", saga_id, "--to", "3").out.splitlines()
    assert human[0].startswith("#1 ") and "Started" in human[0]
    assert any(line.startswith("#3 ") and "StepSucceeded" in line for line in human)
    assert not any(line.startswith("#4 ") for line in human)


def test_replay_diff_shows_only_what_each_event_changed(cli_env: dict[str, str], completed: tuple[Result, str]) -> None:
    _, saga_id = completed
    frames = alphasaga(cli_env, "replay", saga_id, "--diff", "--json").json()["events"]
    full = alphasaga(cli_env, "replay", saga_id, "--json").json()["events"]
    assert all("state" not in f for f in frames)
    last = frames[-1]
    assert last["event"] == "Completed"
    changed = {c["path"]: c for c in last["changes"]}
    assert changed["state"] == {"path": "state", "before": "RUNNING", "after": "COMPLETED"}
    assert set(changed) <= {"state", "version", "deadline", "current_step"}, changed
    # Applying the changes of event n to the state after n-1 gives the state after n.
    for before, after, frame in zip(full, full[1:], frames[1:], strict=False):
        paths = {c["path"] for c in frame["changes"]}
        for key in set(before["state"]) | set(after["state"]):
            if before["state"].get(key) != after["state"].get(key):
                assert any(p == key or p.startswith(f"{key}.") for p in paths), (frame["number"], key)
            else:
                assert not any(p == key or p.startswith(f"{key}.") for p in paths), (frame["number"], key)


def test_replay_check_passes_on_healthy_sagas(
    cli_env: dict[str, str], completed: tuple[Result, str], rolled_back: tuple[Result, str]
) -> None:
    for _, saga_id in (completed, rolled_back):
        result = alphasaga(cli_env, "replay", saga_id, "--check")
        assert result.code == 0, result
        assert result.out.startswith(f"ok: saga {saga_id}")
        assert alphasaga(cli_env, "replay", saga_id, "--check", "--json").json()["violations"] == []


async def test_replay_check_fails_on_a_saga_whose_events_break_an_invariant(
    env: dict[str, str], store: EventStore, stack_store: EventStore, completed: tuple[Result, str]
) -> None:
    """The completed saga's history copied into a scratch schema twice: once as it is, once
    with every step after the first cut out (COMPLETED after one step)."""
    _, source = completed
    rows = await stack_store.read_stream(f"saga-{source}")
    outbox = await stack_store.read_stream(f"outbox:{source}")
    healthy, broken = uuid.uuid4(), uuid.uuid4()

    def copy(selected: list[Any]) -> list[NewEvent]:
        return [NewEvent(type=r.type, data=r.data, metadata=r.metadata) for r in selected]

    for saga_id, selected in ((healthy, rows), (broken, [*rows[:3], rows[-1]])):
        await store.append(f"saga-{saga_id}", copy(selected), expected_version=0)
        await store.append(f"outbox:{saga_id}", copy(outbox), expected_version=0)

    ok = alphasaga(env, "replay", str(healthy), "--check")
    assert ok.code == 0, ok
    failed = alphasaga(env, "replay", str(broken), "--check")
    assert_one_line_error(failed, code=1, contains="invariant violation")
    violations = [line for line in failed.out.splitlines() if line.startswith("violation: ")]
    assert violations, failed
    report = alphasaga(env, "replay", str(broken), "--check", "--json")
    assert report.code == 1 and json.loads(report.out)["ok"] is False


def test_status_and_list_read_the_projection(
    cli_env: dict[str, str], completed: tuple[Result, str], rolled_back: tuple[Result, str]
) -> None:
    _, done = completed
    _, failed = rolled_back
    rolled = alphasaga(cli_env, "list", "--state", "rolled_back", "--json").json()
    assert failed in {s["saga_id"] for s in rolled} and done not in {s["saga_id"] for s in rolled}
    assert all(s["state"] == "ROLLED_BACK" and "ml failed" in s["failure"] for s in rolled)
    everything = alphasaga(cli_env, "list", "--since", "1h", "--limit", "0", "--json").json()
    assert {done, failed} <= {s["saga_id"] for s in everything}
    assert alphasaga(cli_env, "list", "--since", "2000-01-01", "--limit", "1", "--json").json()[0]["saga_id"]
    assert alphasaga(cli_env, "list", "--since", "2999-01-01", "--json").json() == []
    text = alphasaga(cli_env, "status", failed)
    assert text.code == 0 and "ROLLED_BACK" in text.out and "ml failed" in text.out
    (updated,) = [line for line in text.out.splitlines() if line.startswith("updated")]
    assert updated.endswith(" after it started)"), updated  # what the time in brackets is


def test_the_status_of_an_ended_saga_shows_nothing_held_for_it(
    servers: Servers, stack: Stack, cli_env: dict[str, str], completed: tuple[Result, str]
) -> None:
    """A saga that has ended waits for nothing: a copy a service still holds of one of its
    messages is not shown (and the status reads no Redis for it; docs/cli.md)."""
    import dataclasses
    import time

    import redis

    from alphasaga_shared.held import Held, held_key

    _, saga_id = completed
    held = Held("ml", "ml-1", "ml.TrainModel", "ml", "PostgreSQL", time.time())
    client = redis.Redis.from_url(servers.redis_url)
    client.hset(held_key(stack.settings.namespace, saga_id), "1-0", json.dumps(dataclasses.asdict(held)))
    try:
        shown = alphasaga(cli_env, "status", saga_id, "--json").json()
        text = alphasaga(cli_env, "status", saga_id)
    finally:
        client.delete(held_key(stack.settings.namespace, saga_id))
        client.close()
    assert shown["state"] == "COMPLETED" and shown["waiting"] == []
    assert text.code == 0 and "waiting" not in text.out and "COMPLETED" in text.out


def test_events_filters_the_global_log_by_saga_and_type(
    cli_env: dict[str, str], rolled_back: tuple[Result, str]
) -> None:
    _, saga_id = rolled_back
    mine = alphasaga(cli_env, "events", "--saga", saga_id, "--json").json_lines()
    streams = {e["stream_id"] for e in mine}
    assert streams == {f"saga-{saga_id}", f"outbox:{saga_id}"}
    saga_events = [e for e in mine if e["stream_id"].startswith("saga-")]
    replayed = alphasaga(cli_env, "replay", saga_id, "--json").json()
    assert len(saga_events) == replayed["total_events"]
    failed = alphasaga(cli_env, "events", "--saga", saga_id, "--type", "StepFailed", "--json").json_lines()
    assert failed and all("StepFailed" in e["type"] for e in failed)
    assert len(alphasaga(cli_env, "events", "--limit", "3", "--json").json_lines()) == 3


def test_artifacts_lists_and_fetches_files_that_match_their_hashes(
    cli_env: dict[str, str], completed: tuple[Result, str], rolled_back: tuple[Result, str], tmp_path: Path
) -> None:
    _, saga_id = completed
    listed = alphasaga(cli_env, "artifacts", saga_id, "--json").json()
    assert {a["kind"] for a in listed} >= {"code", "model", "report", "chart"}
    fetched = alphasaga(cli_env, "artifacts", saga_id, "--out", str(tmp_path / "out"), "--json").json()
    for item in fetched:
        content = Path(item["path"]).read_bytes()
        assert hashlib.sha256(content).hexdigest() == item["sha256"] and len(content) == item["size"]
    assert (tmp_path / "out" / "chart.png").read_bytes().startswith(b"\x89PNG")
    _, rolled = rolled_back
    assert alphasaga(cli_env, "artifacts", rolled, "--json").json() == []


def test_an_unknown_saga_is_one_line_and_exit_2(cli_env: dict[str, str]) -> None:
    unknown = str(uuid.uuid4())
    for args in (["status", unknown], ["replay", unknown], ["artifacts", unknown], ["watch", unknown]):
        assert_one_line_error(alphasaga(cli_env, *args), contains=f"no saga {unknown}")
    assert_one_line_error(alphasaga(cli_env, "status", "not-a-saga"), contains="is not a saga id")


def test_fork_from_ml_runs_ml_again_with_the_change_and_diff_names_where_the_two_part(
    cli_env: dict[str, str], completed: tuple[Result, str]
) -> None:
    _, source = completed
    forked = alphasaga(
        cli_env,
        "fork",
        source,
        "--from-step",
        "ml",
        "--set",
        "model_kind=linear",
        "--wait",
        "--json",
        "--timeout",
        SAGA_TIMEOUT,
        timeout=float(SAGA_TIMEOUT),
    )
    assert forked.code == 0, forked
    fork_id = json.loads(forked.out)["saga_id"]
    shown = alphasaga(cli_env, "diff", source, fork_id, "--json")
    assert shown.code == 0, shown
    found = json.loads(shown.out)
    first = found["first_divergence"]
    assert first["a"]["event"] == first["b"]["event"] == "StepCommanded"
    assert first["changes"] == [{"path": "inputs.model_kind", "before": "lightgbm", "after": "linear"}]
    assert [s["step"] for s in found["steps"]][:1] == ["ml"], "reasoning and codegen were reused, not run again"
    plain = alphasaga(cli_env, "diff", source, fork_id)
    assert "first divergence: a #" in plain.out and 'input model_kind: "lightgbm" -> "linear"' in plain.out
    assert_one_line_error(alphasaga(cli_env, "fork", source, "--from-step", "nothing"), contains="no step 'nothing'")
