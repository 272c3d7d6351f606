"""A reasoning worker on the real worker runtime (both lanes, their slots, the bus's
reclaim, dead letters and idempotency guard) whose ``run`` behaves as the request's seed
says, for the express lane's tests. Run as ``python -m tests.support.lane_worker``.

seed 1: with LANE_HANG set, works until killed (a saga that holds its lane), else
answers; seed 2: raises an error the runtime does not know (a bug: retried, then
dead-lettered); any other: answers at once. Each run prints ``ran <saga> <attempt> <seed>``
when it starts."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from alphasaga_contracts import Service
from alphasaga_contracts import steps as st
from alphasaga_shared.runner import ServiceContext
from alphasaga_shared.worker import KindHandlers, handles, run_worker
from tests.support import replies

FOREVER, CRASH = 1, 2


async def form(cmd: st.FormHypothesis) -> st.HypothesisFormed:
    seed = cmd.request.seed
    print(f"ran {cmd.saga_id} {cmd.attempt} {seed}", flush=True)
    if seed == FOREVER and os.environ.get("LANE_HANG"):
        await asyncio.sleep(3600)
    if seed == CRASH:
        raise ZeroDivisionError("simulated bug in the planner")
    reply = replies.success("reasoning", cmd.saga_id, cmd.step, cmd.attempt)
    assert isinstance(reply, st.HypothesisFormed)
    return reply


async def undo(_: Any) -> None:
    return None


async def make_handlers(ctx: ServiceContext) -> list[KindHandlers]:
    return [handles(st.REASONING, run=form, undo=undo)]


if __name__ == "__main__":
    run_worker(Service.REASONING, make_handlers)
