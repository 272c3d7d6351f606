"""Submitting through the API records the saga's owner and its start (an outbox row the
relay publishes) in one transaction, so a saga id the API accepted always answers:
PENDING until the orchestrator starts it, REJECTED with the orchestrator's reason when it
refuses to, never 404; and a crash between the two writes leaves neither."""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import Any

from alphasaga_accounts import Principal
from alphasaga_client.usecases import idempotent_message_id
from alphasaga_contracts import saga as sg
from alphasaga_shared.eventstore import EventStore
from tests.support.harness import Harness, workflow
from tests.support.helpers import eventually

from .conftest import Api

START = "orchestrator.StartResearch"


async def outbox_rows(store: EventStore, saga_id: uuid.UUID) -> list[Any]:
    return await store.read_stream(f"outbox:{saga_id}")


async def owner(store: EventStore, saga_id: uuid.UUID) -> str | None:
    value = await store.pool.fetchval("SELECT subject FROM saga_owners WHERE saga_id = $1", saga_id)
    return None if value is None else str(value)


async def test_an_express_submit_is_recorded_for_the_orchestrators_express_lane(api: Api, store: EventStore) -> None:
    streams = api.runtime.client.settings.streams
    submitted = await api.http.post(
        "/v1/research?priority=express", json={"dataset": "nasdaq"}, headers=api.auth("researcher")
    )
    assert submitted.status_code == 202, submitted.text
    (row,) = await outbox_rows(store, uuid.UUID(submitted.json()["saga_id"]))
    assert row.metadata["stream"] == streams.commands("orchestrator") + ":express"
    assert row.data["priority"] == "express"
    refused = await api.http.post(
        "/v1/research?priority=urgent", json={"dataset": "nasdaq"}, headers=api.auth("researcher")
    )
    assert refused.status_code in (400, 422), refused.text


async def test_a_submitted_saga_answers_pending_with_its_owner_and_start_recorded_together(
    api: Api, store: EventStore
) -> None:
    headers = {**api.auth("researcher"), "Idempotency-Key": "pending-1"}
    submitted = await api.http.post("/v1/research", json={"dataset": "nasdaq"}, headers=headers)
    assert submitted.status_code == 202, submitted.text
    saga_id = uuid.UUID(submitted.json()["saga_id"])

    detail = await api.http.get(f"/v1/sagas/{saga_id}", headers=api.auth("viewer"))
    assert detail.status_code == 200, detail.text
    saga = detail.json()["saga"]
    assert saga["state"] == "PENDING" and saga["dataset"] == "nasdaq" and saga["workflow"] == "research"
    assert saga["submitted_at"] and detail.json()["outcome"] is None

    (row,) = await outbox_rows(store, saga_id)
    assert row.type == START and row.metadata["message_id"] == submitted.json()["message_id"]
    assert row.metadata["stream"] == api.runtime.client.settings.streams.commands("orchestrator")
    assert (await owner(store, saga_id) or "").startswith("key:")

    again = await api.http.post("/v1/research", json={"dataset": "nasdaq"}, headers=headers)
    assert again.json()["saga_id"] == str(saga_id)
    assert len(await outbox_rows(store, saga_id)) == 1, "a retried submit is recorded once"

    cancel = await api.http.post(f"/v1/sagas/{saga_id}/cancel", headers=api.auth("researcher"))
    assert cancel.status_code == 409 and "has not started yet" in cancel.json()["detail"], cancel.text
    listed = await api.http.get("/v1/sagas", headers=api.auth("viewer"))
    assert listed.status_code == 200 and listed.json()["items"] == [], "the list holds sagas that started"


CRASH = """
import asyncio, os
from alphasaga_accounts import Principal
from alphasaga_client import AlphaSaga
from alphasaga_client.usecases import Caller
from alphasaga_client.usecases.research import submit_research
from alphasaga_contracts.research import ResearchRequest


async def crash() -> None:
    os._exit(137)  # dead between the owner's row and the start's, inside their transaction


async def main() -> None:
    client = AlphaSaga()
    caller = Caller(Principal("user:ada", "researcher"), client, await client.accounts())
    await submit_research(caller, ResearchRequest(dataset="sp500"), idempotency_key="crash-1", between_writes=crash)


asyncio.run(main())
"""


async def test_a_crash_between_the_owner_and_the_start_leaves_no_ownerless_saga(
    api: Api, store: EventStore, env: dict[str, str]
) -> None:
    saga_id = sg.derived_saga_id(idempotent_message_id(Principal("user:ada", "researcher"), "crash-1"))
    crashed = subprocess.run([sys.executable, "-c", CRASH], env=env, capture_output=True, text=True, timeout=120)
    assert crashed.returncode == 137, crashed.stderr
    assert await owner(store, saga_id) is None
    assert await outbox_rows(store, saga_id) == []
    assert (await api.http.get(f"/v1/sagas/{saga_id}", headers=api.auth("viewer"))).status_code == 404

    # The same submit, run to its end: both rows, and the id answers.
    done = subprocess.run(
        [sys.executable, "-c", CRASH.replace("between_writes=crash", "between_writes=None")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert await owner(store, saga_id) == "user:ada"
    assert [r.type for r in await outbox_rows(store, saga_id)] == [START]
    pending = await api.http.get(f"/v1/sagas/{saga_id}", headers=api.auth("viewer"))
    assert pending.json()["saga"]["state"] == "PENDING"


async def rejected(api: Api, saga_id: str) -> dict[str, Any]:
    """The saga id's answer once it is REJECTED; every answer before is PENDING, never 404."""

    async def answer() -> dict[str, Any] | None:
        r = await api.http.get(f"/v1/sagas/{saga_id}", headers=api.auth("viewer"))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        assert body["saga"]["state"] in ("PENDING", "REJECTED"), body
        return body if body["saga"]["state"] == "REJECTED" else None

    found: dict[str, Any] = await eventually(answer, timeout=60, interval=0.1)
    return found


async def test_a_start_of_a_workflow_that_does_not_exist_answers_rejected_with_the_reason(api: Api, h: Harness) -> None:
    await h.ready(h.orchestrator(h.workflows_file(workflow())))
    submitted = await api.http.post(
        "/v1/research", params={"workflow": "no-such-workflow"}, json={"dataset": "sp500"}, headers=api.auth("admin")
    )
    assert submitted.status_code == 202, submitted.text
    body = await rejected(api, submitted.json()["saga_id"])
    assert body["outcome"]["state"] == "REJECTED"
    assert "unknown workflow 'no-such-workflow' (known: research" in body["outcome"]["failure"]
    assert body["saga"]["submitted_at"] and body["steps"] == []
    assert await h.events(uuid.UUID(submitted.json()["saga_id"])) == [], "no saga was started"


async def test_a_start_the_orchestrator_dead_letters_answers_rejected_with_the_reason(api: Api, h: Harness) -> None:
    """The API accepts entries up to its limit; this orchestrator's limit is smaller, so the
    start is dead-lettered there, as oversized, and its refusal recorded."""
    await h.ready(h.orchestrator(h.workflows_file(workflow()), ALPHASAGA_MAX_ENTRY_BYTES="1024"))
    path = "/data/" + "x" * 900 + ".csv"
    submitted = await api.http.post("/v1/research", json={"data_path": path}, headers=api.auth("admin"))
    assert submitted.status_code == 202, submitted.text
    saga_id = submitted.json()["saga_id"]
    body = await rejected(api, saga_id)
    failure = body["outcome"]["failure"]
    assert "dead letter" in failure and ":cmd:orchestrator:dlq" in failure and "over the 1,024-byte limit" in failure
    (letter,) = await api.runtime.client.dead_letters("cmd:orchestrator")
    assert letter.fields["correlation_id"] == saga_id and letter.entry_id in failure
    refused = [u.event async for u in api.runtime.client.follow(saga_id, timeout_s=30)]
    assert isinstance(refused[-1], sg.RequestRejected), "the sender is told on the lifecycle stream too"
