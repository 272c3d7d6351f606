"""The express lane goes first within a process (bus/lanes.py): while an express batch is
in hand, a normal lane starts nothing; express work never waits for the gate."""

from __future__ import annotations

import asyncio

from alphasaga_shared.bus.chain import Batch
from alphasaga_shared.bus.lanes import GiveWay, LaneGate
from alphasaga_shared.wire import Delivery


async def test_a_normal_message_waits_while_an_express_batch_is_in_hand_and_goes_on_after_it() -> None:
    gate, order = LaneGate(), []
    express_done = asyncio.Event()

    async def express() -> None:
        async with gate.express():
            order.append("express in hand")
            async with gate.express():  # two express batches at once: both must end
                await express_done.wait()
            order.append("express done")

    async def handler(batch: Batch, d: Delivery) -> None:
        order.append(f"normal {d.entry_id}")

    held = asyncio.create_task(express())
    await asyncio.sleep(0)
    d = Delivery(stream="t:cmd:ml", entry_id="1-0", fields={})
    normal = asyncio.create_task(GiveWay(gate)(Batch([d]), d, handler))
    for _ in range(5):
        await asyncio.sleep(0)
    assert order == ["express in hand"], "the normal message gave way"
    express_done.set()
    await asyncio.wait_for(asyncio.gather(held, normal), 5)
    assert order == ["express in hand", "express done", "normal 1-0"]


async def test_an_express_batch_never_waits_for_the_gate() -> None:
    gate = LaneGate()
    async with gate.express(), gate.express():  # inside an express batch, another starts at once
        pass
    await asyncio.wait_for(gate.turn(), 5)  # and with none in hand, a normal lane's turn comes at once


async def test_a_normal_lane_lets_an_express_read_that_has_arrived_go_first() -> None:
    gate, order = LaneGate(), []
    assert gate.give_way("t:cmd:ml") is not None
    assert gate.give_way("t:cmd:ml:express") is None  # this process reads an express lane
    release = asyncio.Event()

    async def express_read_arrives() -> None:  # scheduled, not yet run, when the normal lane asks
        async with gate.express():
            order.append("express")
            await release.wait()

    arrived = asyncio.create_task(express_read_arrives())
    turn = asyncio.create_task(gate.turn())
    for _ in range(5):
        await asyncio.sleep(0)
    assert order == ["express"] and not turn.done(), "the normal lane waits for the express batch"
    release.set()
    await asyncio.wait_for(asyncio.gather(arrived, turn), 5)
