"""``python -m alphasaga_orchestrator``: the saga orchestrator and the outbox relay."""

from __future__ import annotations

import logging

from alphasaga_shared.config import ConfigError
from alphasaga_shared.outbox import Relay
from alphasaga_shared.runner import DATABASE_UNREACHABLE, ServiceContext, StartupError, run_service

from .projection import SagaProjector
from .service import COMMIT_POOL_SETTINGS, Orchestrator, subscribed_streams
from .workflow import WorkflowFileError, load_workflows

log = logging.getLogger(__name__)


async def setup(ctx: ServiceContext) -> None:
    relay = Relay(
        ctx.store, await ctx.bus.connect(), batch=ctx.settings.relay_batch, poll_ms=ctx.settings.relay_poll_ms
    )
    try:
        workflows = load_workflows(ctx.settings.workflows)
    except WorkflowFileError as exc:
        raise ConfigError(str(exc)) from None
    for w in workflows.all():
        log.info("workflow %s v%d: %s", w.name, w.version, " -> ".join(st.name for st in w.steps))
    try:
        commit_pool = await ctx.store.pool_with(
            COMMIT_POOL_SETTINGS,
            application_name="alphasaga-orchestrator-commits",
            timeout=ctx.settings.connect_timeout_s,
        )
    except DATABASE_UNREACHABLE as exc:
        raise StartupError(f"cannot open the commit pool on PostgreSQL: {exc or type(exc).__name__}") from None
    orchestrator = Orchestrator(
        ctx.store, ctx, workflows, relay, snapshot_every=ctx.settings.snapshot_every, commit_pool=commit_pool
    )
    for stream in subscribed_streams(ctx):
        # No Redis-side guard: the orchestrator's inbox lives in Postgres, in the same
        # transaction as the events a message causes.
        ctx.bus.subscribe(stream, orchestrator.handle, prepare=orchestrator.prepare)
    if ctx.settings.run_relay:  # or run it alone: python -m alphasaga_shared.outbox
        ctx.background.append(relay.run)
    # Keeps the saga list read model warm; `alphasaga status`/`list` catch up on their own.
    if ctx.settings.run_projector:  # or run it alone: python -m alphasaga_orchestrator.projection
        ctx.background.append(SagaProjector(ctx.store).run)
    ctx.background.append(lambda: orchestrator.run_timers(ctx.settings.timer_poll_ms / 1000))


def main() -> None:
    run_service("orchestrator", setup)


if __name__ == "__main__":
    main()
