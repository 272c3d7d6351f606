"""The saga_summaries projection: rebuilt from the log, it gives the same ``list``."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from alphasaga_contracts import Message, Streams
from alphasaga_contracts import saga as sg
from alphasaga_contracts import steps as st
from alphasaga_contracts.research import ResearchRequest
from alphasaga_orchestrator.decide import Context, decide
from alphasaga_orchestrator.plan import Plan
from alphasaga_orchestrator.repository import SagaRepository
from alphasaga_saga.aggregate import Saga
from alphasaga_saga.mapper import SagaMapper
from alphasaga_saga.streams import saga_stream
from alphasaga_saga.workflow import DEFAULT_WORKFLOWS
from alphasaga_shared.eventstore import EventStore, NewEvent, outbox_stream
from alphasaga_shared.outbox_rows import outbox_events
from alphasaga_shared.wire import envelope_for
from cli.tests.clirunner import alphasaga
from tests.support import replies
from tests.support.helpers import Proc

N_SAGAS = 1000


def history(
    saga_id: uuid.UUID, streams: Streams, *, fail_at: str | None, stop_at: str | None
) -> tuple[list[Any], list[Any]]:
    """A saga decided by the real ``decide()`` against workers that answer at once: it fails
    (non-retryably) at ``fail_at``, or is left waiting at ``stop_at``, or completes."""
    ctx = Context(DEFAULT_WORKFLOWS)
    plan = Plan(SagaRepository(store=None), streams)  # type: ignore[arg-type]  # it only addresses here
    repo_events: list[Any] = []
    outgoing: list[Any] = []
    saga: Saga | None = None
    inbox: list[Message] = [sg.StartResearch(saga_id=saga_id, request=ResearchRequest(dataset="sp500"))]
    while inbox:
        incoming = envelope_for(inbox.pop(0), correlation_id=str(saga_id))
        d = decide(saga, incoming, ctx)
        assert d.saga is not None
        repo_events.extend(d.saga.collect_events())
        outgoing.extend(plan.addressed(saga_id, d.saga, incoming.message_id, d, ""))
        saga = d.saga
        for send in d.sends:
            cmd = send.message
            if isinstance(cmd, st.StepCommand) and cmd.step != stop_at:
                if cmd.step == fail_at:
                    inbox.append(replies.failure(cmd.step, saga_id, cmd.step, cmd.attempt, retryable=False))
                else:
                    inbox.append(replies.success(cmd.step, saga_id, cmd.step, cmd.attempt))
            elif isinstance(cmd, st.CompensateStep):
                inbox.append(replies.compensated(cmd.kind, saga_id, cmd.step, cmd.attempt))
    return repo_events, outgoing


async def seed(store: EventStore, streams: Streams, n: int) -> Counter[str]:
    repo = SagaMapper()
    scenarios = [(None, None), ("ml", None), (None, "codegen"), ("reasoning", None)]
    expected: Counter[str] = Counter()
    batch: list[tuple[str, list[NewEvent], str, list[NewEvent]]] = []
    for i in range(n):
        saga_id = uuid.uuid4()
        fail_at, stop_at = scenarios[i % len(scenarios)]
        events, outgoing = history(saga_id, streams, fail_at=fail_at, stop_at=stop_at)
        expected["RUNNING" if stop_at else "ROLLED_BACK" if fail_at else "COMPLETED"] += 1
        batch.append(
            (saga_stream(saga_id), repo.to_new_events(events, {}), outbox_stream(str(saga_id)), outbox_events(outgoing))
        )
        if len(batch) == 100 or i == n - 1:
            async with store.transaction() as conn:
                for stream, rows, outbox, sent in batch:
                    await store.append(stream, rows, expected_version=0, conn=conn)
                    await store.append(outbox, sent, expected_version=0, conn=conn)
            batch.clear()
    return expected


@pytest.fixture
async def projector(env: dict[str, str], tmp_path: Path) -> AsyncIterator[Proc]:
    """The saga list's projector, as a deployment runs it: ``list`` only reads, and waits
    for it to have read what was committed before."""
    proc = Proc.module("alphasaga_orchestrator.projection", env, tmp_path / "projector.log")
    try:
        await proc.wait_for("ready", timeout=60)
        yield proc
    finally:
        proc.stop()


async def test_projections_rebuild_on_1000_sagas_reproduces_the_same_list(
    env: dict[str, str], store: EventStore, projector: Proc
) -> None:
    expected = await seed(store, Streams(env["ALPHASAGA_NAMESPACE"]), N_SAGAS)
    before = alphasaga(env, "list", "--limit", "0", "--json").json()
    assert len(before) == N_SAGAS
    before_text = alphasaga(env, "list", "--limit", "0").out
    assert Counter(s["state"] for s in before) == expected
    assert all(s["failure"] and "failed (invalid_input)" in s["failure"] for s in before if s["state"] == "ROLLED_BACK")
    assert all(s["current_step"] == "codegen" for s in before if s["state"] == "RUNNING")
    completed = [s["verdict"] for s in before if s["state"] == "COMPLETED"]
    assert all(v["accepted"] is True and v["reasons"] == [] for v in completed)

    # Damage the table the way a bug would: rebuild must fold the log again, not trust it.
    async with store.transaction() as conn:
        await conn.execute("DELETE FROM saga_summaries WHERE saga_id = $1", uuid.UUID(before[0]["saga_id"]))
        await conn.execute(
            "UPDATE saga_summaries SET state = 'BOGUS', version = 999 WHERE saga_id = $1",
            uuid.UUID(before[1]["saga_id"]),
        )
    damaged = alphasaga(env, "list", "--limit", "0", "--json").json()
    assert damaged != before

    rebuilt = alphasaga(env, "projections", "rebuild", "--json").json()
    assert rebuilt["sagas"] == N_SAGAS
    assert alphasaga(env, "list", "--limit", "0", "--json").json() == before
    assert alphasaga(env, "list", "--limit", "0").out == before_text
    rolled = alphasaga(env, "list", "--state", "ROLLED_BACK", "--limit", "0", "--json").json()
    assert len(rolled) == expected["ROLLED_BACK"]


async def test_the_projection_catches_up_incrementally_and_status_is_never_stale(
    env: dict[str, str], store: EventStore, projector: Proc
) -> None:
    streams = Streams(env["ALPHASAGA_NAMESPACE"])
    await seed(store, streams, 3)
    assert len(alphasaga(env, "list", "--json").json()) == 3
    await seed(store, streams, 2)
    listed = alphasaga(env, "list", "--json").json()
    assert len(listed) == 5
    for s in listed[:2]:
        status = alphasaga(env, "status", s["saga_id"], "--json").json()
        replayed = alphasaga(env, "replay", s["saga_id"], "--json").json()
        assert status["saga_state"] == replayed["events"][-1]["state"]
        assert status["version"] == replayed["total_events"]
