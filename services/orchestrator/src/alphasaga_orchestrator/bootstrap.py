"""The orchestrator's parts wired together: the one place that knows which part takes
which. ``service`` builds the whole service (the service's ``__main__`` only runs it);
``orchestrator`` builds the decision handler alone, for tests."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from alphasaga_contracts import KINDS, Service
from alphasaga_readmodel.projector import SagaProjector
from alphasaga_readmodel.store import ReadStore
from alphasaga_saga.workflow import DEFAULT_WORKFLOWS, WorkflowFileError, WorkflowRegistry, load_workflows
from alphasaga_shared import metrics
from alphasaga_shared.config import ConfigError, Settings
from alphasaga_shared.eventstore import EventStore
from alphasaga_shared.eventstore.archive import due_before
from alphasaga_shared.outbox import Relay, relay_for
from alphasaga_shared.runner import DATABASE_UNREACHABLE, ServiceContext, StartupError

from . import tuning
from .admission import refusal
from .handling import Orchestrator
from .projection import projector
from .repository import SagaRepository
from .sagastore import SagaStore
from .settings import OrchestratorSettings
from .timers import Timers

log = logging.getLogger(__name__)


def orchestrator(
    events: EventStore,
    settings: Settings,
    config: OrchestratorSettings | None = None,
    *,
    workflows: WorkflowRegistry = DEFAULT_WORKFLOWS,
    relay: Relay | None = None,
    commit_pool: asyncpg.Pool | None = None,
) -> Orchestrator:
    """An orchestrator over ``events``; ``commit_pool`` takes the commits of a few sagas
    (``tuning.COMMIT_POOL_SETTINGS``)."""
    config = config or OrchestratorSettings()
    store = SagaStore(events, commit_pool=commit_pool, small_commit_max=tuning.GENERIC_PLAN_MAX_SAGAS)
    repo = SagaRepository(
        store,
        snapshot_every=config.snapshot_every,
        cache_size=config.saga_cache_size,
        shared_window_s=tuning.SHARED_WINDOW_S,
    )
    return Orchestrator(store, repo, settings.streams, workflows, relay, max_error_chars=settings.max_error_chars)


@dataclass
class OrchestratorService:
    """The service: the decision handler over its store, the relay (when it runs here), the
    saga-list projector (likewise) and the deadlines' timers."""

    settings: Settings
    store: SagaStore
    orchestrator: Orchestrator
    relay: Relay | None
    projector: SagaProjector | None
    timers: Timers

    def attach(self, ctx: ServiceContext) -> None:
        """Subscribe to the request and reply streams, and add the background loops."""
        streams, bus = self.settings.streams, ctx.bus
        handle, batch = self.orchestrator.handle, self.orchestrator.decide_and_commit_batch
        self.orchestrator.give_way = bus.lanes.turn
        admit = refusal(streams)  # its stream takes requests only; a worker's, that worker's replies only
        # No Redis-side guard: the orchestrator's inbox lives in PostgreSQL, in the same
        # transaction as the events a message causes. Its spans are the sagas' (traced off).
        # Each stream's express lane is read apart from its normal one (its own read loop),
        # so that an express saga's messages never wait behind a backlog (decisions/0023).
        for stream in streams.lanes(streams.commands(Service.ORCHESTRATOR)):
            bus.subscribe(
                stream,
                handle,
                batch_handler=batch,
                on_dead_letter=self.orchestrator.request_dead_lettered,
                traced=False,
                admit=admit,
            )
        # Its own event stream: a campaign's child's end, which only the orchestrator writes.
        bus.subscribe(streams.events(Service.ORCHESTRATOR), handle, batch_handler=batch, traced=False, admit=admit)
        for worker in KINDS.services():
            for stream in streams.lanes(streams.events(worker)):
                bus.subscribe(stream, handle, batch_handler=batch, traced=False, admit=admit)
            for queue in KINDS.queues(worker):  # its kinds' command streams
                for stream in streams.lanes(streams.commands(queue)):
                    bus.watch(stream, worker.value)
        if self.relay is not None:
            ctx.background.append(self.relay.run)
            metrics.on_scrape(self.relay.measure_backlog)
        if self.projector is not None:
            ctx.background.append(self.projector.run)
        ctx.background.append(self.timers.run)
        metrics.on_scrape(self._timer_backlog)
        if self.settings.retention_hot_days is not None:
            metrics.on_scrape(self._archive_lag)

    async def _timer_backlog(self) -> None:
        metrics.TIMER_BACKLOG.set(await self.store.timer_backlog())

    async def _archive_lag(self) -> None:
        # The archive is run by `alphasaga archive run` (a job of its own, with the archive's
        # role): the orchestrator, always up and scraped, says whether it keeps up.
        assert self.settings.retention_hot_days is not None
        due = due_before(self.settings.retention_hot_days)
        metrics.ARCHIVE_LAG.set(await ReadStore(self.store.events).archive_lag(due))


async def service(ctx: ServiceContext, config: OrchestratorSettings | None = None) -> OrchestratorService:
    """The whole service over ``ctx``'s store and bus. A bad workflow file is a
    ``ConfigError``; a commit pool that cannot be opened a ``StartupError``."""
    config = config or OrchestratorSettings()
    settings = ctx.settings
    try:
        workflows = load_workflows(config.workflows)
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
    # The relay also runs alone (python -m alphasaga_shared.outbox), the projector too
    # (python -m alphasaga_orchestrator.projection): then they are off here.
    relay = relay_for(ctx.store, ctx.bus, ctx.settings.namespace) if config.run_relay else None
    handler = orchestrator(ctx.store, settings, config, workflows=workflows, relay=relay, commit_pool=commit_pool)
    store = SagaStore(ctx.store)  # timers, on the event store's pool
    timers = Timers(store, handler.apply, poll_s=config.timer_poll_ms / 1000, batch=config.timer_batch)
    return OrchestratorService(
        settings, store, handler, relay, projector(ctx, settings) if config.run_projector else None, timers
    )
