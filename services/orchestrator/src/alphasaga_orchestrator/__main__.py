"""``python -m alphasaga_orchestrator``: the saga orchestrator and the outbox relay."""

from __future__ import annotations

from alphasaga_shared.outbox import Relay
from alphasaga_shared.runner import ServiceContext, run_service

from .service import Orchestrator, subscribed_streams


async def setup(ctx: ServiceContext) -> None:
    relay = Relay(
        ctx.store, await ctx.bus.connect(), batch=ctx.settings.relay_batch, poll_ms=ctx.settings.relay_poll_ms
    )
    orchestrator = Orchestrator(ctx.store, ctx, relay=relay, snapshot_every=ctx.settings.snapshot_every)
    for stream in subscribed_streams(ctx):
        # No Redis-side guard: the orchestrator's inbox lives in Postgres, in the same
        # transaction as the events a message causes.
        ctx.bus.subscribe(stream, orchestrator.handle)
    ctx.background.append(relay.run)
    ctx.background.append(lambda: orchestrator.run_timers(ctx.settings.timer_poll_ms / 1000))


def main() -> None:
    run_service("orchestrator", setup)


if __name__ == "__main__":
    main()
