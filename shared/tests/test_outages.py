"""Which errors are outages, and what the bus's error policy does with one: the message is
held and handled again until the store answers, or answered for past its deadline; it is
never failed, never dead-lettered, and no delivery is counted. Real client errors
(asyncpg and redis-py refused on a closed port), no server needed."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Sequence

import asyncpg
import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from alphasaga_contracts import saga as sg
from alphasaga_shared.bus import chain as ch
from alphasaga_shared.conditions import Conditions
from alphasaga_shared.outages import POSTGRESQL, REDIS, Outages, Span, classify
from alphasaga_shared.wire import Delivery, Outgoing, decode, encode, envelope_for


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def raised(make: object) -> BaseException:
    try:
        await make  # type: ignore[misc]
    except BaseException as exc:  # what the client raised, to classify
        return exc
    raise AssertionError("expected an error")


async def test_refused_connections_of_either_client_are_outages_of_their_store() -> None:
    port = closed_port()
    pg = await raised(asyncpg.connect(f"postgresql://x@127.0.0.1:{port}/x", timeout=5))
    client = aioredis.Redis(port=port, socket_connect_timeout=5, retry=Retry(NoBackoff(), 0))  # refused at once
    rd = await raised(client.ping())
    await client.aclose()
    assert isinstance(pg, ConnectionRefusedError | OSError), repr(pg)
    assert classify(pg) == POSTGRESQL
    assert classify(rd) == REDIS
    for exc, store in [
        (asyncpg.CannotConnectNowError("starting up"), POSTGRESQL),
        (asyncpg.TooManyConnectionsError("full"), POSTGRESQL),
        (asyncpg.AdminShutdownError("terminating"), POSTGRESQL),
        (asyncpg.ConnectionDoesNotExistError("lost"), POSTGRESQL),
        (asyncpg.InterfaceError("connection is closed"), POSTGRESQL),
        (redis_errors.BusyLoadingError("loading"), REDIS),
        (redis_errors.ConnectionError("reset"), REDIS),
        (redis_errors.TimeoutError("Timeout connecting to server"), REDIS),
    ]:
        assert classify(exc) == store, exc


async def test_errors_that_do_not_say_a_store_is_unreachable_are_not_outages() -> None:
    timed_out = await raised(asyncio.wait_for(asyncio.sleep(1), 0.001))
    for exc in [
        ValueError("bad input"),
        FileNotFoundError("no such file"),
        BrokenPipeError("a sandbox's pipe"),  # a socket error from no store's client
        timed_out,  # a handler's own timeout
        asyncpg.UniqueViolationError("duplicate"),
        asyncpg.InterfaceError("cannot call Connection.fetch(): connection has been released back to the pool"),
        redis_errors.AuthenticationError("wrong password"),
        redis_errors.ResponseError("NOGROUP"),
        redis_errors.TimeoutError("Timeout reading from socket"),
    ]:
        assert classify(exc) is None, exc


def held_delivery(count: int = 1) -> Delivery:
    msg = sg.CancelSaga(saga_id=uuid.uuid4(), reason="r")
    fields = encode(envelope_for(msg, correlation_id=str(msg.saga_id)))
    d = Delivery(stream="ns:cmd:test", entry_id="1-0", fields=fields, delivery_count=count)
    d.envelope = decode(fields)
    return d


class Board:
    def __init__(self) -> None:
        self.shown: list[str] = []
        self.cleared: list[str] = []

    async def show(self, d: Delivery, span: Span) -> None:
        self.shown.append(span.describe())

    async def clear(self, d: Delivery) -> None:
        self.cleared.append(d.entry_id)


async def test_the_error_policy_holds_a_message_through_an_outage_and_counts_no_attempt() -> None:
    conditions = Conditions()
    outages = Outages(conditions, initial_backoff_s=0.001)
    board = Board()
    seen_held: list[set[str]] = []
    calls = 0

    async def handler(batch: ch.Batch, d: Delivery) -> None:
        nonlocal calls
        calls += 1
        seen_held.append(set(conditions.held()))
        if calls < 4:
            raise asyncpg.CannotConnectNowError("the database system is starting up")
        batch.handled(d)

    d = held_delivery(count=5)  # at the cap: any failure counted would dead-letter it
    batch = ch.Batch([d])
    policy = ch.ErrorPolicy(5, ch.OutagePolicy(outages=outages, board=board))
    await policy(batch, d, handler)
    assert calls == 4 and batch.ack == ["1-0"] and batch.dead == [] and batch.outcome.failed == 0
    assert seen_held[1:] == [{"outage:postgresql"}] * 3, "not ready while it waited"
    assert conditions.held() == {} and outages.current() == {}
    assert board.shown and board.shown[0].startswith("PostgreSQL unreachable since") and board.cleared == ["1-0"]
    [span] = outages.recent()
    assert span.until is not None and span.store == POSTGRESQL


async def test_past_its_deadline_a_held_message_is_answered_for_and_acked_never_dead_lettered() -> None:
    outages = Outages(Conditions(), initial_backoff_s=0.001)
    answered: list[str] = []

    def outlasted(d: Delivery, reason: str) -> Sequence[Outgoing]:
        answered.append(reason)
        assert d.envelope is not None
        return [Outgoing("ns:events:test", d.envelope)]

    async def handler(batch: ch.Batch, d: Delivery) -> None:
        raise redis_errors.ConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")

    d = held_delivery(count=5)
    batch = ch.Batch([d])
    policy = ch.OutagePolicy(outages=outages, deadline=lambda _: time.time() + 0.05, outlasted=outlasted)
    await ch.ErrorPolicy(5, policy, lambda out: {"type": out.envelope.type})(batch, d, handler)
    assert batch.dead == [] and batch.ack == ["1-0"]
    assert batch.outputs == [("ns:events:test", {"type": "orchestrator.CancelSaga"})]
    [reason] = answered
    assert reason.startswith("Redis unreachable since") and "past the deadline" in reason, reason
    assert outages.current() == {}


async def test_a_failure_that_is_no_outage_still_follows_the_delivery_cap() -> None:
    d = held_delivery(count=5)
    batch = ch.Batch([d])

    async def handler(batch: ch.Batch, d: Delivery) -> None:
        raise ValueError("a bug")

    await ch.ErrorPolicy(5, ch.OutagePolicy(outages=Outages(Conditions())))(batch, d, handler)
    assert [x.entry_id for x in batch.dead] == ["1-0"] and "ValueError" in (d.error or "")


async def test_an_outage_its_last_caller_gave_up_on_goes_on_when_it_is_met_again() -> None:
    outages = Outages(Conditions())
    refused = asyncpg.CannotConnectNowError("the database system is shutting down")
    first = outages.begin(POSTGRESQL, refused)
    outages.end(POSTGRESQL, recovered=False)  # its deadline passed; the store never answered
    assert outages.begin(POSTGRESQL, refused) is first and first.until is None
    outages.end(POSTGRESQL, recovered=True)
    assert outages.begin(POSTGRESQL, refused) is not first, "after it answered, a new outage"
