"""Each of the bus's middlewares alone, and the chain they make, without a server: what a
batch will commit is on the ``Batch``, so these tests read it there."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from alphasaga_contracts import saga as sg
from alphasaga_shared.bus import chain as ch
from alphasaga_shared.wire import Delivery, Envelope, MalformedMessage, Outgoing, decode, encode, envelope_for


def entry(reason: str = "r", message_id: str | None = None) -> dict[str, str]:
    msg = sg.CancelSaga(saga_id=uuid.uuid4(), reason=reason)
    return encode(envelope_for(msg, correlation_id=str(msg.saga_id), message_id=message_id))


def delivery(n: int, fields: dict[str, str] | None = None, count: int = 1) -> Delivery:
    return Delivery(stream="ns:cmd:test", entry_id=f"{n}-0", fields=fields or entry(), delivery_count=count)


def decoded(n: int, reason: str = "r", message_id: str | None = None, count: int = 1) -> Delivery:
    d = delivery(n, entry(reason, message_id), count)
    d.envelope = decode(d.fields)
    return d


class Recorder:
    """The rest of the chain: records what reached it (and may raise)."""

    def __init__(self, raises: BaseException | None = None) -> None:
        self.seen: list[list[str]] = []
        self.raises = raises

    async def __call__(self, batch: ch.Batch, d: Delivery | None = None) -> None:
        self.seen.append([x.entry_id for x in batch.deliveries] if d is None else [d.entry_id])
        if self.raises is not None:
            raise self.raises


async def test_the_size_guard_dead_letters_an_oversized_entry_with_its_headers_only() -> None:
    big = entry()
    big["body"] = big["body"][:-1] + ', "pad": "' + "x" * 5000 + '"}'
    batch = ch.Batch([delivery(1), delivery(2, big)])
    rest = Recorder()
    await ch.SizeGuard(4096)(batch, rest)
    assert rest.seen == [["1-0"]]
    [dead] = batch.dead
    assert dead.entry_id == "2-0" and "oversized" in (dead.error or "")
    assert "body" not in dead.fields and dead.fields["type"] == "orchestrator.CancelSaga"
    assert batch.ack == ["2-0"] and batch.outcome.dead_lettered == 1


async def test_the_decoder_dead_letters_what_breaks_the_wire_format_or_the_contract() -> None:
    bad_type = {**entry(), "type": "no.SuchMessage"}
    bad_body = {**entry(), "body": '{"saga_id": "not a uuid"}'}
    batch = ch.Batch([delivery(1), delivery(2, bad_type), delivery(3, bad_body)])
    rest = Recorder()
    await ch.decode_entries(batch, rest)
    assert rest.seen == [["1-0"]]
    assert batch.deliveries[0].envelope is not None
    assert {d.entry_id for d in batch.dead} == {"2-0", "3-0"}
    assert all((d.error or "").startswith("malformed:") for d in batch.dead)


async def test_admit_dead_letters_at_once_what_the_subscriber_does_not_take_from_its_stream() -> None:
    def refusal(d: Delivery) -> str | None:
        assert d.envelope is not None  # it runs after decoding
        return "not here" if isinstance(d.envelope.message, sg.CancelSaga) and d.entry_id == "2-0" else None

    batch = ch.Batch([decoded(1), decoded(2), decoded(3)])
    rest = Recorder()
    await ch.Admit(refusal)(batch, rest)
    assert rest.seen == [["1-0", "3-0"]]
    assert [(d.entry_id, d.error) for d in batch.dead] == [("2-0", "refused: not here")]
    assert batch.ack == ["2-0"] and batch.outcome.dead_lettered == 1


async def test_the_idempotency_guard_acks_what_was_done_before_or_twice_in_one_batch() -> None:
    asked: list[Sequence[str]] = []

    async def seen_before(ids: Sequence[str]) -> list[bool]:
        asked.append(ids)
        return [i == "old" for i in ids]

    batch = ch.Batch([decoded(1, message_id="old"), decoded(2, message_id="new"), decoded(3, message_id="new")])
    rest = Recorder()
    await ch.Dedupe(seen_before)(batch, rest)
    assert asked == [["old", "new", "new"]]
    assert rest.seen == [["2-0"]]
    assert batch.ack == ["1-0", "3-0"] and batch.outcome.duplicates == 2


async def test_in_flight_entries_are_known_while_the_rest_runs_and_forgotten_after_even_on_error() -> None:
    working: set[str] = set()
    during: list[set[str]] = []

    async def rest(batch: ch.Batch) -> None:
        during.append(set(working))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await ch.InFlight(working)(ch.Batch([decoded(1), decoded(2)]), rest)
    assert during == [{"1-0", "2-0"}] and working == set()


@pytest.mark.parametrize("fails", [False, True])
async def test_the_batch_handler_takes_what_it_can_and_the_rest_goes_on_one_by_one(fails: bool) -> None:
    async def handle(deliveries: Sequence[Delivery]) -> set[str]:
        if fails:
            raise RuntimeError("the batch path broke")
        return {"1-0"}

    batch = ch.Batch([decoded(1), decoded(2)])
    rest = Recorder()
    await ch.BatchFirst(handle, "s")(batch, rest)
    if fails:
        assert rest.seen == [["1-0", "2-0"]] and batch.ack == []
    else:
        assert rest.seen == [["2-0"]] and batch.ack == ["1-0"] and batch.outcome.processed == 1


@pytest.mark.parametrize(
    ("exc", "count", "dead"),
    [
        (RuntimeError("flaky"), 1, False),
        (RuntimeError("flaky"), 4, False),
        (RuntimeError("flaky"), 5, True),  # the cap
        (MalformedMessage("never valid"), 1, True),
    ],
)
async def test_the_error_policy_dead_letters_at_the_cap_or_at_once_for_an_invalid_message(
    exc: Exception, count: int, dead: bool
) -> None:
    batch = ch.Batch([])
    d = decoded(1, count=count)
    await ch.ErrorPolicy(delivery_cap=5)(batch, d, Recorder(raises=exc))
    assert bool(batch.dead) is dead
    assert batch.ack == (["1-0"] if dead else [])  # a failure stays pending for the reclaimer
    assert batch.outcome.failed == (0 if dead else 1)
    assert str(exc) in (d.error or "")


class Histogram:
    def __init__(self) -> None:
        self.observed: list[tuple[float, Any]] = []

    def observe(self, value: float, exemplar: Any = None) -> None:
        self.observed.append((value, exemplar))


@pytest.mark.parametrize("fails", [False, True])
async def test_the_handler_is_timed_whether_it_succeeds_or_fails(fails: bool) -> None:
    h = Histogram()
    rest = Recorder(raises=RuntimeError("x") if fails else None)
    try:
        await ch.Timed(h)(ch.Batch([]), decoded(1), rest)
    except RuntimeError:
        assert fails
    assert len(h.observed) == 1 and h.observed[0][0] >= 0


async def test_the_whole_chain_collects_one_commit_in_order() -> None:
    async def handler(env: Envelope, d: Delivery) -> Sequence[Outgoing]:
        assert isinstance(env.message, sg.CancelSaga)
        if env.message.reason == "bug":
            raise RuntimeError("a handler bug")
        return [Outgoing("ns:evt:test", env)]

    async def never_seen(ids: Sequence[str]) -> list[bool]:
        return [False] * len(ids)

    run = ch.chain(
        [ch.SizeGuard(1 << 20), ch.decode_entries, ch.Dedupe(never_seen), ch.InFlight(set())],
        [ch.ErrorPolicy(5), ch.Traced(traced=False), ch.Timed(Histogram())],
        handler,
        encode=lambda out: encode(out.envelope),
    )
    ok, bug, junk = delivery(1, entry("ok", "m1")), delivery(2, entry("bug", "m2")), delivery(3, {"type": "x"})
    batch = ch.Batch([ok, bug, junk])
    await run(batch)
    assert [s for s, _ in batch.outputs] == ["ns:evt:test"]
    assert batch.outputs[0][1]["message_id"] == "m1"
    assert sorted(batch.ack) == ["1-0", "3-0"]  # the failed one stays pending
    assert batch.done == ["m1"]
    assert [d.entry_id for d in batch.dead] == ["3-0"]
    assert batch.outcome == ch.BatchOutcome(processed=1, duplicates=0, dead_lettered=1, failed=1)
