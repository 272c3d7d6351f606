"""The bus's connections pack commands with hiredis: the bytes must be exactly those of
redis-py's own packer, and what redis-py refuses is refused."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from alphasaga_shared.bus import Bus, HiredisPackingConnection
from alphasaga_shared.config import Settings

COMMANDS: list[tuple[object, ...]] = [
    ("XADD", "ns:cmd:reasoning", "*", "message_id", "m-1", "body", '{"text": "é日 \\u0000"}'),
    ("XREADGROUP", "GROUP", "g", "c", "COUNT", 100, "BLOCK", 1000, "STREAMS", "s", ">"),
    ("XACK", b"s", b"g", b"1-0", b"2-0"),
    ("SET", "k", b"\x00\xff", "EX", 86400),
    ("CLIENT SETNAME", "orchestrator"),
    (b"CONFIG GET", b"maxmemory"),
    ("ZADD", "z", 1.5, "m", 2, "n"),
    ("SET", "k", memoryview(b"view"), "PX", 10),
    ("SET", "k", bytearray(b"array")),
    ("XADD", "s", "*", "body", "x" * 200_000),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_the_same_bytes_as_redis_py(command: tuple[object, ...]) -> None:
    ours = b"".join(HiredisPackingConnection().pack_command(*command))  # type: ignore[arg-type]
    theirs = b"".join(bytes(chunk) for chunk in Connection().pack_command(*command))  # type: ignore[arg-type]
    assert ours == theirs


@pytest.mark.parametrize("bad", [None, True, {"a": 1}])
def test_what_redis_py_refuses_is_refused(bad: object) -> None:
    with pytest.raises(DataError):
        Connection().pack_command("SET", "k", bad)  # type: ignore[arg-type]
    with pytest.raises(DataError):
        HiredisPackingConnection().pack_command("SET", "k", bad)  # type: ignore[arg-type]


async def test_the_bus_connects_with_it(settings: Settings) -> None:
    bus = Bus(settings, service="test")
    client = await bus.connect()
    try:
        assert client.connection_pool.connection_class is HiredisPackingConnection
        assert await client.ping()
    finally:
        await bus.broker.stop()
