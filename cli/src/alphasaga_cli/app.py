"""The ``alphasaga`` command line."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from typing import Annotated, Any

import redis.asyncio as aioredis
import typer
from pydantic import ValidationError

from alphasaga_contracts import saga as sg
from alphasaga_contracts.research import ResearchRequest
from alphasaga_shared.artifacts import ArtifactStore
from alphasaga_shared.client import follow, stream_tip, submit, write_results
from alphasaga_shared.config import ConfigError, Settings
from alphasaga_shared.embedded import EmbeddedUnavailable
from alphasaga_shared.eventstore import EventStore
from alphasaga_shared.stack import Stack, StackError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="AlphaSaga: automated trading-strategy research.")


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _describe(event: sg.SagaEvent) -> str:
    if isinstance(event, sg.SagaStarted):
        return f"started ({event.workflow} v{event.workflow_version})"
    if isinstance(event, sg.SagaStepCompleted):
        return f"step {event.step} completed (attempt {event.attempt})"
    if isinstance(event, sg.SagaStepFailed):
        return f"step {event.step} failed: {event.error}"
    if isinstance(event, sg.SagaCompensating):
        return f"compensating {', '.join(event.steps_to_compensate) or 'nothing'}: {event.reason}"
    if isinstance(event, sg.SagaCompleted):
        return f"COMPLETED: {_verdict(event.outputs)}"
    if isinstance(event, sg.SagaRolledBack):
        return f"ROLLED_BACK: {event.reason}"
    if isinstance(event, sg.SagaCompensationFailed):
        return f"COMPENSATION_FAILED at {event.step}: {event.error}"
    return event.TYPE


def _verdict(outputs: dict[str, Any]) -> str:
    """One line a researcher reads first: the verdict and the numbers behind it."""
    verdict = outputs.get("verdict") or {}
    metrics = outputs.get("metrics") or {}
    head = "accepted" if verdict.get("accepted") else "rejected: " + "; ".join(verdict.get("reasons") or ["?"])
    if not metrics:
        return head
    return (
        f"{head} (Sharpe {metrics.get('sharpe', float('nan')):.2f}, CAGR {metrics.get('cagr', float('nan')):.1%}, "
        f"max drawdown {metrics.get('max_drawdown', float('nan')):.1%}, {metrics.get('n_trades', 0):.0f} trades; "
        f"buy and hold Sharpe {metrics.get('buy_and_hold_sharpe', float('nan')):.2f})"
    )


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
            on_event=lambda e: typer.echo(f"  {_describe(e)}"),
        )
        results = await write_results(settings.data_dir / "results" / str(saga_id), outcome, ArtifactStore(store.pool))
        typer.echo(f"outcome: {_describe(outcome)}")
        typer.echo(f"results: {results}")
        return 0 if isinstance(outcome, sg.SagaCompleted) else 1
    finally:
        await redis.aclose()
        await store.close()


def _request_from(dataset: str, start: str | None, end: str | None, objective: str) -> ResearchRequest:
    try:
        return ResearchRequest.model_validate({"dataset": dataset, "start": start, "end": end, "objective": objective})
    except ValidationError as exc:
        raise _fail(f"invalid request: {exc.errors()[0]['msg']}") from None


@app.command()
def run(
    dataset: Annotated[str, typer.Option(help="Built-in dataset")] = "sp500",
    start: Annotated[str | None, typer.Option(help="First date, YYYY-MM-DD")] = None,
    end: Annotated[str | None, typer.Option(help="Last date, YYYY-MM-DD")] = None,
    objective: Annotated[str, typer.Option(help="trend, mean_reversion or auto")] = "auto",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the saga")] = 900,
) -> None:
    """Start every service, run one research saga end to end, print its outcome, stop.

    Example: alphasaga run --dataset sp500 --start 2010-01-01
    """
    request = _request_from(dataset, start, end, objective)
    settings = Settings()
    stack = Stack(settings, say=typer.echo)
    try:
        stack.start()
        code = asyncio.run(_submit_and_wait(stack, settings, request, timeout))
    except (ConfigError, StackError, EmbeddedUnavailable, TimeoutError) as exc:
        raise _fail(str(exc)) from None
    finally:
        stack.stop()
    raise typer.Exit(code)


@app.command()
def up() -> None:
    """Start every service in the foreground until Ctrl-C (work in flight is left pending
    for the reclaimer of the next start).

    Example: alphasaga up   # then, in another terminal: alphasaga submit --dataset sp500
    """
    settings = Settings()
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
        raise _fail(str(exc)) from None
    finally:
        typer.echo("stopping")
        stack.stop()


@app.command("submit")
def submit_cmd(
    dataset: Annotated[str, typer.Option(help="Built-in dataset")] = "sp500",
    start: Annotated[str | None, typer.Option(help="First date, YYYY-MM-DD")] = None,
    end: Annotated[str | None, typer.Option(help="Last date, YYYY-MM-DD")] = None,
    objective: Annotated[str, typer.Option(help="trend, mean_reversion or auto")] = "auto",
    wait: Annotated[bool, typer.Option(help="Follow the saga until it ends")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait")] = 900,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Submit a research request to a running system; prints the saga id.

    Example: alphasaga submit --dataset sp500 --wait
    """
    request = _request_from(dataset, start, end, objective)
    settings = Settings()
    if not settings.redis_url:
        raise _fail("ALPHASAGA_REDIS_URL is not set (see `alphasaga up`)")

    async def go() -> int:
        redis = aioredis.from_url(settings.redis_url or "", socket_connect_timeout=settings.connect_timeout_s)
        try:
            tip = await stream_tip(redis, settings.streams.sagas)
            saga_id = await submit(redis, settings.streams, request, uuid.uuid4())
            if not wait:
                typer.echo(json.dumps({"saga_id": str(saga_id)}) if as_json else str(saga_id))
                return 0
            typer.echo(f"saga {saga_id} submitted", err=as_json)
            outcome = await follow(
                redis,
                settings.streams,
                saga_id,
                after=tip,
                timeout_s=timeout,
                on_event=None if as_json else lambda e: typer.echo(f"  {_describe(e)}"),
            )
            if as_json:
                typer.echo(outcome.model_dump_json())
            else:
                typer.echo(f"outcome: {_describe(outcome)}")
            return 0 if isinstance(outcome, sg.SagaCompleted) else 1
        except (OSError, aioredis.ConnectionError) as exc:
            raise _fail(f"cannot reach Redis at {settings.redis_url}: {exc}") from None
        finally:
            await redis.aclose()

    raise typer.Exit(asyncio.run(go()))


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
