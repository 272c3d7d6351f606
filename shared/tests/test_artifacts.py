"""Artifacts against a real PostgreSQL: a compensated step refuses late artifacts, also
when its compensation races the attempt that is still storing them."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from alphasaga_contracts import Service, Streams
from alphasaga_contracts import steps as st
from alphasaga_shared.eventstore import ArtifactStore, EventStore, StepUndone
from alphasaga_shared.wire import Delivery, envelope_for
from alphasaga_shared.worker import Worker, handles

ROUNDS = 100


async def test_an_undone_step_refuses_new_artifacts_and_other_steps_do_not(store: EventStore) -> None:
    artifacts = ArtifactStore(store.pool)
    saga = uuid.uuid4()
    await artifacts.put(saga, "ml", "model", "model", b"weights", "application/octet-stream")
    await artifacts.put(saga, "codegen", "strategy", "code", b"print(1)", "text/x-python")
    assert await artifacts.remove_step(saga, "ml") == 1
    with pytest.raises(StepUndone, match="step ml of saga"):
        await artifacts.put(saga, "ml", "model", "model", b"late weights", "application/octet-stream")
    assert [a.step for a in await artifacts.list(saga)] == ["codegen"]
    assert await artifacts.remove_step(saga, "ml") == 0  # idempotent
    await artifacts.put(uuid.uuid4(), "ml", "model", "model", b"weights", "application/octet-stream")


async def test_an_undo_racing_the_attempt_never_leaves_its_artifacts(store: EventStore) -> None:
    artifacts = ArtifactStore(store.pool)
    refused = 0

    async def attempt(saga: uuid.UUID, i: int) -> None:
        await artifacts.put(saga, "ml", "model", "model", f"weights {i}".encode(), "application/octet-stream")

    async def undo(saga: uuid.UUID, i: int) -> int:
        # Land the undo at every point of the attempt's transaction, round after round.
        await asyncio.sleep(i % 20 * 0.0001)
        return await artifacts.remove_step(saga, "ml")

    for i in range(ROUNDS):
        saga = uuid.uuid4()
        results = await asyncio.gather(attempt(saga, i), undo(saga, i), return_exceptions=True)
        if isinstance(results[0], StepUndone):
            refused += 1
        elif isinstance(results[0], BaseException):
            raise results[0]
        assert await artifacts.list(saga) == [], f"round {i}: the undone step kept an artifact"
    print(f"{refused} of {ROUNDS} attempts were refused, the rest undone after storing")


async def test_a_worker_whose_step_was_undone_replies_failed_not_crashes(store: EventStore) -> None:
    artifacts = ArtifactStore(store.pool)
    saga = uuid.uuid4()

    async def train(cmd: st.TrainModel) -> st.ModelTrained:
        await artifacts.put(cmd.saga_id, cmd.step, "model", "model", b"weights", "application/octet-stream")
        raise AssertionError("an undone step must not get this far")

    async def undo(cmd: st.CompensateStep) -> None:
        await artifacts.remove_step(cmd.saga_id, cmd.step)

    worker = Worker(Service.ML, [handles(st.ML, run=train, undo=undo)], Streams("t"))
    delivery = Delivery(stream="t:cmd:ml", entry_id="1-0", fields={})
    (undone,) = await worker.handle(
        envelope_for(st.CompensateStep(saga_id=saga, step="ml", kind="ml", attempt=1), correlation_id=str(saga)),
        delivery,
    )
    assert isinstance(undone.envelope.message, st.StepCompensated) and undone.envelope.message.kind == "ml"
    late = st.TrainModel.model_construct(saga_id=saga, step="ml", attempt=1)  # its inputs play no part here
    (reply,) = await worker.handle(envelope_for(late, correlation_id=str(saga)), delivery)
    assert isinstance(reply.envelope.message, st.StepFailed) and reply.envelope.message.kind == "ml", reply
    assert reply.envelope.message.error_kind == "undone" and not reply.envelope.message.retryable
    assert await artifacts.list(saga) == []
