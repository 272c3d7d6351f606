"""``python -m alphasaga_orchestrator``: the saga orchestrator, with the outbox relay and
the saga-list projector (each can run in a process of its own instead)."""

from __future__ import annotations

import logging

from alphasaga_contracts import KINDS, Service
from alphasaga_shared import metrics
from alphasaga_shared.config import ConfigError
from alphasaga_shared.outbox import relay_for
from alphasaga_shared.runner import DATABASE_UNREACHABLE, ServiceContext, StartupError, run_service

from . import bootstrap, tuning
from .projection import SagaProjector
from .timers import Timers
from .workflow import WorkflowFileError, load_workflows

log = logging.getLogger(__name__)


async def setup(ctx: ServiceContext) -> None:
    settings = ctx.settings
    try:
        workflows = load_workflows(settings.workflows)
    except WorkflowFileError as exc:
        raise ConfigError(str(exc)) from None
    for w in workflows.all():
        log.info("workflow %s v%d: %s", w.name, w.version, " -> ".join(st.name for st in w.steps))
    try:
        commit_pool = await ctx.store.pool_with(
            tuning.COMMIT_POOL_SETTINGS,
            application_name="alphasaga-orchestrator-commits",
            timeout=settings.connect_timeout_s,
        )
    except DATABASE_UNREACHABLE as exc:
        raise StartupError(f"cannot open the commit pool on PostgreSQL: {exc or type(exc).__name__}") from None
    relay = relay_for(ctx.store, await ctx.bus.connect(), settings)
    orchestrator = bootstrap.orchestrator(
        ctx.store, settings, workflows=workflows, relay=relay, commit_pool=commit_pool
    )
    store = orchestrator.store
    # No Redis-side guard: the orchestrator's inbox lives in Postgres, in the same
    # transaction as the events a message causes.
    ctx.bus.subscribe(
        settings.streams.commands(Service.ORCHESTRATOR),
        orchestrator.handle,
        batch_handler=orchestrator.decide_and_commit_batch,
        on_dead_letter=orchestrator.request_dead_lettered,
        traced=False,  # its spans are the sagas' (handling.py)
    )
    for worker in KINDS.services():
        ctx.bus.subscribe(
            settings.streams.events(worker),
            orchestrator.handle,
            batch_handler=orchestrator.decide_and_commit_batch,
            traced=False,
        )
        for queue in KINDS.queues(worker):
            ctx.bus.watch(settings.streams.commands(queue), worker.value)
    if settings.run_relay:  # or alone: python -m alphasaga_shared.outbox
        ctx.background.append(relay.run)
        metrics.on_scrape(relay.measure_backlog)
    if settings.run_projector:  # or alone: python -m alphasaga_orchestrator.projection
        projector = SagaProjector(store, batch=settings.projection_batch, poll_ms=settings.projection_poll_ms)
        ctx.background.append(projector.run)
    timers = Timers(store, orchestrator.apply, poll_s=settings.timer_poll_ms / 1000, batch=settings.timer_batch)
    ctx.background.append(timers.run)

    async def timer_backlog() -> None:
        metrics.TIMER_BACKLOG.set(await store.timer_backlog())

    metrics.on_scrape(timer_backlog)


def main() -> None:
    run_service("orchestrator", setup)


if __name__ == "__main__":
    main()
