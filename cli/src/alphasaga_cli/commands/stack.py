"""``run`` and ``up``: the whole system on this machine (embedded servers when no URLs)."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import redis.asyncio as aioredis
import typer

from alphasaga_contracts import saga as sg
from alphasaga_contracts.research import ResearchRequest
from alphasaga_shared.artifacts import ArtifactStore
from alphasaga_shared.client import follow, stream_tip, submit, write_results
from alphasaga_shared.config import ConfigError, Settings
from alphasaga_shared.embedded import EmbeddedUnavailable
from alphasaga_shared.eventstore import EventStore
from alphasaga_shared.stack import Stack, StackError

from ..connect import load_settings
from ..errors import CliError
from ..output import verdict_line
from ..requests import load_request


def describe(event: sg.SagaEvent) -> str:
    if isinstance(event, sg.SagaStarted):
        return f"started ({event.workflow} v{event.workflow_version})"
    if isinstance(event, sg.SagaStepCompleted):
        return f"step {event.step} completed (attempt {event.attempt})"
    if isinstance(event, sg.SagaStepFailed):
        return f"step {event.step} failed: {event.error}"
    if isinstance(event, sg.SagaCompensating):
        return f"compensating {', '.join(event.steps_to_compensate) or 'nothing'}: {event.reason}"
    if isinstance(event, sg.SagaCompleted):
        return f"COMPLETED: {verdict_line(event.outputs.get('verdict'), event.outputs.get('metrics'))}"
    if isinstance(event, sg.SagaRolledBack):
        return f"ROLLED_BACK: {event.reason}"
    if isinstance(event, sg.SagaCompensationFailed):
        return f"COMPENSATION_FAILED at {event.step}: {event.error}"
    return event.TYPE


async def _submit_and_wait(stack: Stack, settings: Settings, request: ResearchRequest, timeout: float) -> int:
    redis = aioredis.from_url(stack.redis_url)
    store = await EventStore.connect(stack.database_url, settings.database_schema)
    try:
        tip = await stream_tip(redis, settings.streams.sagas)
        saga_id = await submit(redis, settings.streams, request)
        typer.echo(f"saga {saga_id} submitted")
        outcome = await follow(
            redis,
            settings.streams,
            saga_id,
            after=tip,
            timeout_s=timeout,
            on_event=lambda e: typer.echo(f"  {describe(e)}"),
        )
        results = await write_results(settings.data_dir / "results" / str(saga_id), outcome, ArtifactStore(store.pool))
        typer.echo(f"outcome: {describe(outcome)}")
        typer.echo(f"results: {results}")
        return 0 if isinstance(outcome, sg.SagaCompleted) else 1
    finally:
        await redis.aclose()
        await store.close()


def run(
    dataset: Annotated[str, typer.Option(help="Built-in dataset")] = "sp500",
    start: Annotated[str | None, typer.Option(help="First date, YYYY-MM-DD")] = None,
    end: Annotated[str | None, typer.Option(help="Last date, YYYY-MM-DD")] = None,
    objective: Annotated[str, typer.Option(help="trend, mean_reversion or auto")] = "auto",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the saga")] = 900,
) -> None:
    """Start every service, run one research saga end to end, stop.

    Example: alphasaga run --dataset sp500 --start 2010-01-01
    """
    request, _ = load_request(None, {"dataset": dataset, "start": start, "end": end, "objective": objective})
    settings = load_settings()
    stack = Stack(settings, say=typer.echo)
    try:
        stack.start()
        code = asyncio.run(_submit_and_wait(stack, settings, request, timeout))
    except (ConfigError, StackError, EmbeddedUnavailable, TimeoutError) as exc:
        raise CliError(str(exc)) from None
    finally:
        stack.stop()
    raise typer.Exit(code)


def up() -> None:
    """Start every service in the foreground until Ctrl-C.

    Work in flight is left pending for the reclaimer of the next start.

    Example: alphasaga up   # then, in another terminal: alphasaga submit --dataset sp500 --wait
    """
    settings = load_settings()
    stack = Stack(settings, say=typer.echo)
    try:
        stack.start()
        typer.echo(f"ALPHASAGA_REDIS_URL={stack.redis_url}")
        typer.echo(f"ALPHASAGA_DATABASE_URL={stack.database_url}")
        typer.echo("press Ctrl-C to stop")
        # Blocked after the children started (they inherit the mask), so that sigwait
        # receives the signal instead of the default action killing us without cleanup.
        stop_signals = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        received = signal.sigwait(stop_signals)
        typer.echo(f"received {signal.Signals(received).name}")
    except (ConfigError, StackError, EmbeddedUnavailable) as exc:
        raise CliError(str(exc)) from None
    finally:
        typer.echo("stopping")
        stack.stop()
