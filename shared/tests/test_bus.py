"""The bus against a real Redis: dead letters, malformed input, the idempotency guard."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from alphasaga_contracts import saga as sg
from alphasaga_shared.bus import Bus
from alphasaga_shared.config import Settings
from alphasaga_shared.wire import Delivery, Envelope, Outgoing, encode, envelope_for
from tests.support.helpers import eventually


def cancel(reason: str, message_id: str | None = None) -> dict[str, str]:
    msg = sg.CancelSaga(saga_id=uuid.uuid4(), reason=reason)
    return encode(envelope_for(msg, correlation_id=str(msg.saga_id), message_id=message_id))


async def entries(redis: aioredis.Redis, stream: str) -> list[dict[str, str]]:
    raw: Any = await redis.xrange(stream)
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in raw]


async def pending(redis: aioredis.Redis, stream: str, group: str) -> int:
    info: Any = await redis.xpending(stream, group)
    return int(info["pending"])


async def test_a_message_that_always_fails_is_dead_lettered_after_exactly_the_cap(
    settings: Settings, redis: aioredis.Redis
) -> None:
    stream = f"{settings.namespace}:cmd:test"
    calls: Counter[str] = Counter()

    async def handler(env: Envelope, d: Delivery) -> Sequence[Outgoing]:
        assert isinstance(env.message, sg.CancelSaga)
        calls[env.message.reason] += 1
        if env.message.reason == "poison":
            raise RuntimeError("boom: this handler always fails")
        return []

    await redis.xadd(stream, cancel("poison"))  # type: ignore[arg-type]
    await redis.xadd(stream, cancel("fine"))  # type: ignore[arg-type]
    bus = Bus(settings, service="test")
    bus.subscribe(stream, handler)
    await bus.start()
    try:
        dlq = f"{stream}:dlq"
        dead = await eventually(lambda: entries(redis, dlq), timeout=15)
        await asyncio.sleep(1.0)  # a sixth delivery would happen within this time
    finally:
        await bus.stop()
    assert calls["poison"] == settings.delivery_cap == 5
    assert calls["fine"] == 1
    assert len(dead) == 1
    letter = dead[0]
    assert "boom: this handler always fails" in letter["dlq_error"]
    assert letter["dlq_delivery_count"] == "5"
    assert letter["dlq_source_stream"] == stream
    original = (await entries(redis, stream))[0]
    for key in ("message_id", "type", "body", "correlation_id"):
        assert letter[key] == original[key]
    assert await pending(redis, stream, "test") == 0


async def test_malformed_and_contract_violating_entries_go_to_the_dead_letter_stream_at_once(
    settings: Settings, redis: aioredis.Redis
) -> None:
    stream = f"{settings.namespace}:cmd:test"
    handled: list[str] = []

    async def handler(env: Envelope, d: Delivery) -> Sequence[Outgoing]:
        assert isinstance(env.message, sg.CancelSaga)
        handled.append(env.message.reason)
        return []

    bad: list[dict[str, str]] = [
        {"garbage": "no headers at all"},
        {"message_id": "m1", "type": "orchestrator.CancelSaga", "body": "{not json"},
        {"message_id": "m2", "type": "orchestrator.CancelSaga", "body": '{"saga_id": "not-a-uuid"}'},
        {"message_id": "m3", "type": "orchestrator.CancelSaga", "body": f'{{"saga_id": "{uuid.uuid4()}", "extra": 1}}'},
        {"message_id": "m4", "type": "no.SuchType", "body": "{}"},
    ]
    for fields in bad:
        await redis.xadd(stream, fields)  # type: ignore[arg-type]
    await redis.xadd(stream, {"message_id": "m5", "type": "orchestrator.CancelSaga", "body": b'{"saga_id": "\xff"}'})
    await redis.xadd(stream, cancel("valid after the bad ones"))  # type: ignore[arg-type]

    bus = Bus(settings, service="test")
    bus.subscribe(stream, handler)
    await bus.start()
    try:
        dead = await eventually(lambda: _at_least(redis, f"{stream}:dlq", 6), timeout=10)
        await eventually(lambda: _true(bool(handled)), timeout=10)
    finally:
        await bus.stop()
    assert handled == ["valid after the bad ones"]
    errors = [d["dlq_error"] for d in dead]
    assert "missing field(s): message_id, type, body" in errors[0]
    assert "violates its contract" in errors[1] and "Invalid JSON" in errors[1]
    assert "saga_id" in errors[2]
    assert "extra" in errors[3]
    assert "unknown message type 'no.SuchType'" in errors[4]
    assert "violates its contract" in errors[5]
    assert all(d["dlq_delivery_count"] == "1" for d in dead)
    assert await pending(redis, stream, "test") == 0


async def test_a_redelivered_or_republished_message_is_acked_not_redone(
    settings: Settings, redis: aioredis.Redis
) -> None:
    stream = f"{settings.namespace}:cmd:test"
    replies = f"{settings.namespace}:evt:test"
    calls: Counter[str] = Counter()

    async def handler(env: Envelope, d: Delivery) -> Sequence[Outgoing]:
        assert isinstance(env.message, sg.CancelSaga)
        calls[env.message_id] += 1
        out = sg.SagaRolledBack(saga_id=env.message.saga_id, reason="done")
        return [Outgoing(replies, envelope_for(out, correlation_id=env.correlation_id, causation_id=env.message_id))]

    same = cancel("twice", message_id="fixed-id-1")
    await redis.xadd(stream, same)  # type: ignore[arg-type]
    await redis.xadd(stream, same)  # type: ignore[arg-type]  # same batch
    bus = Bus(settings, service="test")
    bus.subscribe(stream, handler, dedupe=True)
    await bus.start()
    try:
        await eventually(lambda: _at_least(redis, replies, 1))
        await redis.xadd(stream, same)  # type: ignore[arg-type]  # a later batch: the guard remembers
        await eventually(lambda: _zero_pending(redis, stream, "test", 3))
    finally:
        await bus.stop()
    assert calls == {"fixed-id-1": 1}
    assert len(await entries(redis, replies)) == 1


async def _at_least(redis: aioredis.Redis, stream: str, n: int) -> list[dict[str, str]] | None:
    found = await entries(redis, stream)
    return found if len(found) >= n else None


async def _zero_pending(redis: aioredis.Redis, stream: str, group: str, delivered: int) -> bool:
    info: Any = await redis.xinfo_groups(stream)
    group_info = next(g for g in info if g["name"].decode() == group)
    return int(group_info["pending"]) == 0 and int(group_info.get("entries-read") or 0) >= delivered


async def _true(value: bool) -> bool:
    return value
