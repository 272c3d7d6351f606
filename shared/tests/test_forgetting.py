"""Redis forgetting, piece by piece on a real Redis: the relay's sentinel, and the keeper
that makes a vanished group again (the whole recovery: tests/test_redis_forgets.py)."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from alphasaga_shared import metrics
from alphasaga_shared.bus.groups import CONDITION, GroupKeeper, create_group, is_group_gone
from alphasaga_shared.bus.redis_streams import Bus
from alphasaga_shared.conditions import Conditions
from alphasaga_shared.config import Settings
from alphasaga_shared.sentinel import Sentinel, sentinel_key


async def test_the_sentinel_says_why_until_a_republish_is_done(redis: aioredis.Redis, namespace: str) -> None:
    sentinel = Sentinel(redis, namespace)
    assert "missing" in (await sentinel.forgotten() or "")
    await sentinel.begin()
    assert "unfinished" in (await sentinel.forgotten() or "")
    assert await sentinel.done()
    assert await sentinel.forgotten() is None
    await redis.set(sentinel_key(namespace), "0123456789abcdef")  # as another server's run_id
    assert "another server" in (await sentinel.forgotten() or "")
    await sentinel.begin()
    await redis.delete(sentinel_key(namespace))  # forgotten again while re-publishing
    assert not await sentinel.done()
    assert "missing" in (await sentinel.forgotten() or "")


class _Sub:
    def __init__(self, stream: str, group: str) -> None:
        self.stream, self.group = stream, group


async def test_the_keeper_makes_a_vanished_group_again_at_0_and_counts_it(
    redis: aioredis.Redis, namespace: str
) -> None:
    stream = f"{namespace}:cmd:x"
    await redis.xadd(stream, {"a": "1"})  # written while no group existed: must still be read
    sub, restarted, conditions = _Sub(stream, "g"), list[object](), Conditions()

    async def restart(s: object) -> None:
        restarted.append(s)

    keeper = GroupKeeper(redis, 30.0, restart, conditions)
    try:
        await redis.xautoclaim(stream, "g", "c", 0)
    except Exception as exc:
        assert is_group_gone(exc)
    else:
        raise AssertionError("XAUTOCLAIM on a missing group should fail")
    before = metrics.GROUPS_RECREATED.labels(stream, "g")._value.get()
    await keeper.heal(sub)
    assert metrics.GROUPS_RECREATED.labels(stream, "g")._value.get() == before + 1
    assert restarted == [sub] and CONDITION not in conditions.held()
    read = await redis.xreadgroup("g", "c", {stream: ">"})
    assert len(read[0][1]) == 1, "the group starts at 0"
    assert not await create_group(redis, stream, "g"), "made once"
    await keeper.heal(sub)  # already there: not counted again
    assert metrics.GROUPS_RECREATED.labels(stream, "g")._value.get() == before + 1


async def test_a_group_that_cannot_be_made_again_holds_the_condition(redis: aioredis.Redis, namespace: str) -> None:
    stream = f"{namespace}:not-a-stream"
    await redis.set(stream, "a string, not a stream")  # XGROUP CREATE answers WRONGTYPE
    conditions = Conditions()

    async def restart(_: object) -> None:
        raise AssertionError("not restarted without its group")

    await GroupKeeper(redis, 0.01, restart, conditions).heal(_Sub(stream, "g"))
    assert CONDITION in conditions.held()


def test_each_sagas_last_decision_is_published_again_first() -> None:
    import datetime as dt
    import uuid

    from alphasaga_shared.eventstore import RecordedEvent
    from alphasaga_shared.outbox import latest_first

    def row(position: int, stream: str, tx: int) -> RecordedEvent:
        now = dt.datetime.now(dt.UTC)
        return RecordedEvent(position, stream, position, uuid.uuid4(), "t", "{}", {}, tx, now)

    a1, b1, a2, a3, b2 = (
        row(1, "outbox:a", 10),
        row(2, "outbox:b", 11),
        row(3, "outbox:a", 12),
        row(4, "outbox:a", 12),
        row(5, "outbox:b", 13),
    )
    assert latest_first([a1, b1, a2, a3, b2]) == [a2, a3, b2, a1, b1]
    assert latest_first([]) == []


async def test_readiness_names_a_group_that_is_gone(redis: aioredis.Redis, settings: Settings) -> None:
    # The bus is connected but not started, so no keeper makes the group again behind the
    # check (the running service's probe, which races it: tests/test_health.py).
    stream = f"{settings.namespace}:cmd:x"
    bus = Bus(settings, service="x")
    bus.subscribe(stream, _ignore)
    await bus.connect()
    try:
        await create_group(redis, stream, "x")
        await bus.check_groups()  # there: no error
        await redis.xgroup_destroy(stream, "x")
        with pytest.raises(LookupError, match=f"no group x on {stream}"):
            await bus.check_groups()
    finally:
        await bus.stop()


async def _ignore(message: object) -> None:
    return None
