"""The Restate side of the peer workload: one service whose handler runs four no-op
steps, each journaled by Restate (``ctx.run_typed``, the non-deprecated ``ctx.run``)
before the next starts. Served by hypercorn (``bench.peers.restate``)."""

from __future__ import annotations

import restate

service = restate.Service("BenchFlow")


def _noop() -> None:
    return None


@service.handler()
async def run(ctx: restate.Context, n: int) -> int:
    # Four durable steps, as many as a research saga has: every one is a journal entry
    # that Restate stores before the handler goes on.
    for step in range(4):
        await ctx.run_typed(f"step{step}", _noop)
    return n


app = restate.app(services=[service])
