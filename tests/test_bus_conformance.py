"""One conformance suite for the bus, run on both transports (issue #27): Redis Streams and
NATS JetStream must keep the same promises, seen only through the bus's port
(``open_bus``), so that nothing above the bus needs to know which one carries a message."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from alphasaga_contracts import saga as sg
from alphasaga_shared.bus import BusPort, open_bus
from alphasaga_shared.config import Settings
from alphasaga_shared.wire import Delivery, Envelope, MalformedMessage, Outgoing, encode, envelope_for
from tests.support.helpers import ROOT, Proc, eventually

ECHO = ROOT / "tests" / "support" / "echo_worker.py"


def cancel(reason: str, *, saga: uuid.UUID | None = None, message_id: str | None = None) -> Envelope:
    msg = sg.CancelSaga(saga_id=saga or uuid.uuid4(), reason=reason)
    return envelope_for(msg, correlation_id=str(msg.saga_id), message_id=message_id)


async def until(check: Callable[[], object], timeout: float) -> None:
    async def holds() -> bool:
        return bool(check())

    await eventually(holds, timeout=timeout)


def reason(env: Envelope) -> str:
    assert isinstance(env.message, sg.CancelSaga)
    return env.message.reason


def recorder(seen: list[str]) -> object:
    async def handle(env: Envelope, d: Delivery) -> Sequence[Outgoing]:
        seen.append(reason(env))
        return []

    return handle


async def started(settings: Settings, stream: str, handler: object, **options: object) -> BusPort:
    bus = open_bus(settings, service="conformance")
    bus.subscribe(stream, handler, **options)  # type: ignore[arg-type]
    await bus.start()
    return bus


async def test_published_messages_are_consumed(bus_settings: Settings) -> None:
    stream = bus_settings.streams.commands("conformance")
    seen: list[str] = []
    publisher = open_bus(bus_settings, service="publisher")
    await publisher.publish([Outgoing(stream, cancel(f"m{i}")) for i in range(5)])
    bus = await started(bus_settings, stream, recorder(seen))
    try:
        await until(lambda: len(seen) >= 5, timeout=15)
        await publisher.publish([Outgoing(stream, cancel("late"))])
        await until(lambda: "late" in seen, timeout=15)
    finally:
        await bus.stop()
        await publisher.stop()
    assert sorted(seen) == sorted([f"m{i}" for i in range(5)] + ["late"])


async def test_replicas_of_a_group_share_its_messages_each_handled_once(bus_settings: Settings) -> None:
    stream = bus_settings.streams.commands("conformance")
    by: dict[str, list[str]] = {"a": [], "b": []}

    def slow(name: str) -> object:
        async def handle(env: Envelope, d: Delivery) -> Sequence[Outgoing]:
            by[name].append(reason(env))
            await asyncio.sleep(0.02)
            return []

        return handle

    replicas = [
        await started(
            bus_settings.model_copy(update={"consumer": f"replica-{name}"}), stream, slow(name), max_records=1
        )
        for name in by
    ]
    try:
        await replicas[0].publish([Outgoing(stream, cancel(f"m{i}")) for i in range(40)])
        await until(lambda: len(by["a"]) + len(by["b"]) >= 40, timeout=30)
        await asyncio.sleep(0.3)  # a second handling of any message would show within this
    finally:
        for bus in replicas:
            await bus.stop()
    handled = Counter(by["a"] + by["b"])
    assert set(handled) == {f"m{i}" for i in range(40)}
    assert max(handled.values()) == 1, handled.most_common(3)
    assert by["a"] and by["b"], "both replicas of the group took a share"


async def test_a_consumer_killed_mid_message_has_its_messages_redelivered_to_another(
    bus_settings: Settings, bus_env: dict[str, str], tmp_path: Path
) -> None:
    stream = bus_settings.streams.commands("echo")
    replies = bus_settings.streams.events("echo")
    n = 20
    publisher = open_bus(bus_settings, service="publisher")
    message_ids = [str(uuid.uuid4()) for _ in range(n)]
    await publisher.publish([Outgoing(stream, cancel(f"m{i}", message_id=m)) for i, m in enumerate(message_ids)])
    common = {**bus_env, "ECHO_STREAM": stream, "ECHO_REPLY_STREAM": replies, "ECHO_BATCH": "5"}
    # The victim hangs inside m7's handler, holding its batch unacknowledged.
    victim = Proc.script(ECHO, {**common, "ALPHASAGA_CONSUMER": "victim", "ECHO_HANG_ON": "m7"}, tmp_path / "v.log")
    try:
        await victim.wait_for("FINISHED", timeout=30)
        victim.kill9()
        killed_at = time.monotonic()
        survivor = Proc.script(ECHO, {**common, "ALPHASAGA_CONSUMER": "survivor"}, tmp_path / "s.log")
        try:

            async def all_replied() -> bool:
                return len(await publisher.entries(replies)) >= n

            # The promise: what a dead consumer held comes again after the reclaim time.
            await eventually(all_replied, timeout=bus_settings.reclaim_idle_ms / 1000 + 15)
            recovered_in = time.monotonic() - killed_at
            await asyncio.sleep(0.5)
        finally:
            survivor.stop()
    finally:
        victim.kill9()
    causes = Counter(fields["causation_id"] for _, fields in await publisher.entries(replies))
    await publisher.stop()
    assert set(causes) == set(message_ids), "every message was answered"
    assert max(causes.values()) == 1, f"answered twice: {causes.most_common(3)}"
    assert "handled m7" in survivor.text(), "the message the victim died holding was redelivered"
    print(f"{bus_settings.broker_url or 'redis'}: recovered {n} messages {recovered_in:.2f} s after the kill")


async def test_a_message_failing_up_to_the_delivery_cap_is_dead_lettered_with_its_fields(
    bus_settings: Settings,
) -> None:
    stream = bus_settings.streams.commands("conformance")
    calls: Counter[str] = Counter()

    async def handle(env: Envelope, d: Delivery) -> Sequence[Outgoing]:
        calls[reason(env)] += 1
        if reason(env) == "poison":
            raise RuntimeError("boom: this handler always fails")
        return []

    bus = await started(bus_settings, stream, handle)
    poison = cancel("poison")
    try:
        await bus.publish([Outgoing(stream, poison), Outgoing(stream, cancel("fine"))])
        dlq = bus_settings.streams.dead_letters(stream)
        letters = await eventually(lambda: bus.entries(dlq), timeout=30)
        await asyncio.sleep(bus_settings.reclaim_idle_ms / 1000 * 2)  # a further delivery would come within this
        assert calls["poison"] == bus_settings.delivery_cap
        assert calls["fine"] == 1
        assert len(letters) == 1
        (source_id, original), (_, letter) = (await bus.entries(stream))[0], letters[0]
        assert "boom: this handler always fails" in letter["dlq_error"]
        assert letter["dlq_delivery_count"] == str(bus_settings.delivery_cap)
        assert letter["dlq_source_stream"] == stream
        assert letter["dlq_source_id"] == source_id
        assert letter["dlq_group"] == "conformance"
        for key, value in encode(poison).items():
            assert letter[key] == original[key] == value
    finally:
        await bus.stop()


async def test_malformed_entries_go_to_the_dead_letter_stream_at_once(bus_settings: Settings) -> None:
    stream = bus_settings.streams.commands("conformance")
    seen: list[str] = []
    bus = await started(bus_settings, stream, recorder(seen))
    try:
        unknown = {**encode(cancel("x")), "type": "no.SuchMessage"}
        await bus.publish_entries([(stream, {"hello": "world"}), (stream, unknown)])
        await bus.publish([Outgoing(stream, cancel("fine"))])
        dlq = bus_settings.streams.dead_letters(stream)
        letters = await eventually(lambda: _at_least(bus, dlq, 2), timeout=15)
        await until(lambda: seen == ["fine"], timeout=15)
    finally:
        await bus.stop()
    assert [fields["dlq_delivery_count"] for _, fields in letters] == ["1", "1"]
    assert "missing field(s)" in letters[0][1]["dlq_error"]
    assert letters[0][1]["hello"] == "world"
    assert "no.SuchMessage" in letters[1][1]["dlq_error"]


async def _at_least(bus: BusPort, stream: str, n: int) -> list[tuple[str, dict[str, str]]] | None:
    found = await bus.entries(stream)
    return found if len(found) >= n else None


async def test_a_duplicate_publish_is_handled_once(bus_settings: Settings) -> None:
    stream = bus_settings.streams.commands("conformance")
    seen: list[str] = []
    bus = await started(bus_settings, stream, recorder(seen), dedupe=True)
    try:
        twice = cancel("once")
        await bus.publish([Outgoing(stream, twice)])
        await bus.publish([Outgoing(stream, twice), Outgoing(stream, cancel("after"))])
        await until(lambda: "after" in seen, timeout=15)
        await asyncio.sleep(0.5)
    finally:
        await bus.stop()
    assert sorted(seen) == ["after", "once"]


async def test_a_dead_letter_redriven_is_handled_again(bus_settings: Settings) -> None:
    stream = bus_settings.streams.commands("conformance")
    seen: list[str] = []
    fixed = asyncio.Event()

    async def handle(env: Envelope, d: Delivery) -> Sequence[Outgoing]:
        if not fixed.is_set():
            raise MalformedMessage("not yet: the handler refuses it until the fix is deployed")
        seen.append(reason(env))
        return []

    bus = await started(bus_settings, stream, handle, dedupe=True)
    try:
        await bus.publish([Outgoing(stream, cancel("refused first"))])
        dlq = bus_settings.streams.dead_letters(stream)
        letters = await eventually(lambda: bus.entries(dlq), timeout=15)
        assert dlq in await bus.dead_letter_streams(bus_settings.namespace)
        fixed.set()
        entry_id, letter = letters[0]
        original = {k: v for k, v in letter.items() if not k.startswith("dlq_")}
        await bus.redrive(dlq, entry_id, original)
        await until(lambda: seen == ["refused first"], timeout=15)
        assert await bus.entries(dlq) == []
    finally:
        await bus.stop()


async def test_a_graceful_stop_loses_nothing(bus_settings: Settings) -> None:
    stream = bus_settings.streams.commands("conformance")
    first: list[str] = []
    n = 60

    async def slow(env: Envelope, d: Delivery) -> Sequence[Outgoing]:
        await asyncio.sleep(0.01)
        first.append(reason(env))
        return []

    bus = await started(bus_settings, stream, slow, dedupe=True, max_records=5)
    await bus.publish([Outgoing(stream, cancel(f"m{i}")) for i in range(n)])
    await until(lambda: len(first) >= 10, timeout=15)
    await bus.stop()
    assert len(first) < n, "stopped while there was work left"
    rest: list[str] = []
    successor = await started(
        bus_settings.model_copy(update={"consumer": "successor"}), stream, recorder(rest), dedupe=True
    )
    try:
        await until(lambda: len(set(first) | set(rest)) >= n, timeout=30)
        await asyncio.sleep(0.5)
    finally:
        await successor.stop()
    assert set(first) | set(rest) == {f"m{i}" for i in range(n)}
    assert not set(first) & set(rest), "a message finished before the stop was handled again"


async def test_each_saga_s_messages_are_handled_in_the_order_published(bus_settings: Settings) -> None:
    stream = bus_settings.streams.commands("conformance")
    seen: list[tuple[str, int]] = []

    async def handle(env: Envelope, d: Delivery) -> Sequence[Outgoing]:
        seen.append((env.correlation_id, int(reason(env))))
        return []

    bus = await started(bus_settings, stream, handle, max_records=7)
    sagas = [uuid.uuid4() for _ in range(3)]
    try:
        for i in range(15):
            await bus.publish([Outgoing(stream, cancel(str(i), saga=saga)) for saga in sagas])
        await until(lambda: len(seen) >= 45, timeout=15)
    finally:
        await bus.stop()
    for saga in sagas:
        assert [i for s, i in seen if s == str(saga)] == list(range(15))


async def test_the_groups_lag_and_dead_letters_are_reported_on_scrape(bus_settings: Settings) -> None:
    from alphasaga_shared.streamstats import WATCHED

    stream = bus_settings.streams.commands("conformance")
    release = asyncio.Event()

    async def blocked(env: Envelope, d: Delivery) -> Sequence[Outgoing]:
        await release.wait()
        if reason(env) == "bad":
            raise MalformedMessage("refused")
        return []

    bus = await started(bus_settings, stream, blocked, max_records=1)
    try:
        await bus.publish([Outgoing(stream, cancel(r)) for r in ("bad", "a", "b", "c")])

        async def sample(name: str) -> float | None:
            await WATCHED.refresh()
            for family in WATCHED.collect():
                for s in family.samples:
                    if s.name == name and s.labels.get("stream") == stream:
                        return float(s.value)
            return None

        await eventually(lambda: _equals(sample("alphasaga_stream_lag"), 3.0), timeout=15)
        assert await sample("alphasaga_stream_pending") == 1.0
        release.set()
        await eventually(lambda: _equals(sample("alphasaga_dead_letters"), 1.0), timeout=15)
        await eventually(lambda: _equals(sample("alphasaga_stream_lag"), 0.0), timeout=15)
    finally:
        release.set()
        await bus.stop()


async def _equals(value: Awaitable[float | None], wanted: float) -> bool:
    return await value == wanted
