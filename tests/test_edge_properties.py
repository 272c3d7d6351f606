"""The whole system's edges, searched with Hypothesis (issue #23): research requests made
from the contract's own schema, with edge values, sent through the HTTP API and straight
onto the orchestrator's command stream, as a producer outside the project may, with the
five real services running. Every request ends in one of three ways:

- a 4xx problem at the API;
- a saga that ends (COMPLETED, ROLLED_BACK or COMPENSATION_FAILED) with its reason;
- a rejection the caller can query: ``sagas.RequestRejected`` on the lifecycle stream for
  the saga id the request named.

Never a 5xx, never a dead letter made from a valid request, never a saga that does not
appear."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from alphasaga_api.app import create_app
from alphasaga_api.settings import ApiSettings
from alphasaga_cli.stack import Stack
from alphasaga_client import AlphaSaga
from alphasaga_contracts import WORKERS, Service, Streams
from alphasaga_contracts import saga as sg
from conftest import Servers
from tests.support import edges
from tests.support.edges import JSON, wire_accepts
from tests.support.helpers import running_stack

# Each example is two requests; the valid ones run real research. Their dates lie where
# the built-in data has bars, a few years at most, so that most of them run every step.
EXAMPLES = 6
PERIOD = (dt.date(2014, 1, 1), dt.date(2018, 6, 30))
SAGA_TIMEOUT_S = 240.0


@dataclass
class Sent:
    """What was sent, and what each request must end as."""

    accepted: dict[uuid.UUID, str] = field(default_factory=dict)  # saga id -> how it was sent
    refused: set[uuid.UUID] = field(default_factory=set)  # contract-violating, sent onto the stream
    problems: int = 0  # 4xx from the API


@pytest.fixture(scope="module")
def stack(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(servers.redis_url, servers.database_url, tmp_path_factory.mktemp("edges"), "edge") as s:
        yield s


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(stack.settings, ApiSettings(submit_per_minute=10**6, submit_ip_per_minute=10**6), with_mcp=False)
    async with app.router.lifespan_context(app):
        _, key = await app.state.runtime.accounts.create_key("edges", "admin")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api", headers={"Authorization": f"Bearer {key}"}
        ) as c:
            yield c


async def test_every_request_ends_as_a_problem_a_finished_saga_or_a_queryable_rejection(
    stack: Stack, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    sent = Sent()
    async with AlphaSaga(stack.settings) as client:
        redis = await client.redis()
        streams: Streams = stack.settings.streams
        after = await client.lifecycle_cursor()

        async def send(request: dict[str, object]) -> None:
            text = edges.as_json(request)
            r = await http.post("/v1/research", content=text, headers=JSON)
            assert r.status_code < 500, r.text
            if r.status_code == 202:
                sent.accepted[uuid.UUID(r.json()["saga_id"])] = "api"
            else:
                assert 400 <= r.status_code < 500 and r.headers["content-type"] == "application/problem+json"
                sent.problems += 1
            await redis.xadd(streams.commands(Service.ORCHESTRATOR), start(saga_id := uuid.uuid4(), text))
            if wire_accepts(text):
                sent.accepted[saga_id] = "stream"
            else:
                sent.refused.add(saga_id)

        tried = await edges.explore(edges.requests(period=PERIOD), send, max_examples=EXAMPLES)
        endings = await asyncio.gather(*(last_event(client, s, after) for s in [*sent.accepted, *sent.refused]))
        ended = dict(zip([*sent.accepted, *sent.refused], endings, strict=True))
        dead_letters = {svc: await redis.xlen(streams.dead_letters(streams.commands(svc))) for svc in WORKERS}
        refused_letters = await redis.xlen(streams.dead_letters(streams.commands(Service.ORCHESTRATOR)))

    print(f"edge properties: {tried} examples, {len(sent.accepted)} sagas, {len(sent.refused)} rejections, "
          f"{sent.problems} problems")  # fmt: skip
    assert tried >= EXAMPLES // 2
    for saga_id, how in sent.accepted.items():
        event = ended[saga_id]
        assert not isinstance(event, sg.RequestRejected), (how, event)  # accepted, then refused: a lost submit
        assert event.is_terminal(), (how, event)
        reason = getattr(event, "reason", None) or getattr(event, "error", None)
        assert isinstance(event, sg.SagaCompleted) or reason, (how, event)
        assert "dead_letter" not in (reason or ""), (how, reason)
    for saga_id in sent.refused:
        event = ended[saga_id]
        assert isinstance(event, sg.RequestRejected) and event.reason, event
    assert dead_letters == dict.fromkeys(WORKERS, 0), dead_letters  # none made from a valid request
    assert refused_letters == len(sent.refused)  # the refused requests, kept for an operator


def start(saga_id: uuid.UUID, request_json: str, *, correlated: bool = True) -> dict[str, str]:
    """A StartResearch entry as redis-cli could add it (docs/wire-format.md), naming its saga."""
    body = f'{{"saga_id": "{saga_id}", "request": {request_json}}}'
    fields = {"message_id": f"edge-{saga_id}", "type": "orchestrator.StartResearch", "body": body}
    return {**fields, "correlation_id": str(saga_id)} if correlated else fields


async def test_a_refused_start_without_a_correlation_id_is_answered_too(stack: Stack) -> None:
    """The wire format makes correlation_id optional; a start that breaks its contract and
    names its saga only in its body is still answered for that saga id."""
    async with AlphaSaga(stack.settings) as client:
        after = await client.lifecycle_cursor()
        saga_id = uuid.uuid4()
        entry = start(saga_id, edges.as_json({"dataset": "sp500", "trials": 0}), correlated=False)
        await (await client.redis()).xadd(stack.settings.streams.commands(Service.ORCHESTRATOR), entry)
        events = [item.event async for item in client.follow(saga_id, after=after, timeout_s=20)]
    assert isinstance(events[-1], sg.RequestRejected)


async def last_event(client: AlphaSaga, saga_id: uuid.UUID, after: str) -> sg.SagaEvent:
    """The event that ended the saga id's story; a saga that never appears times out here."""
    events = [item.event async for item in client.follow(saga_id, after=after, timeout_s=SAGA_TIMEOUT_S)]
    return events[-1]
