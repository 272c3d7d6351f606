"""``run`` and ``up``: the whole system on this machine (embedded servers when no URLs)."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import CliError
from ..output import echo, verdict_line
from ..session import settings, with_client

if TYPE_CHECKING:
    from alphasaga_client import AlphaSaga
    from alphasaga_contracts.research import ResearchRequest
    from alphasaga_contracts.saga import SagaEvent

    from ..stack import Stack


def describe(event: SagaEvent) -> str:
    from alphasaga_contracts import saga as sg

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
    if isinstance(event, sg.RequestRejected):
        return f"REJECTED: {event.reason}"
    return event.TYPE


_EXTENSIONS = {"application/json": ".json", "image/png": ".png", "text/csv": ".csv", "text/x-python": ".py"}


def _artifact_refs(outputs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in outputs.items() if isinstance(v, dict) and {"sha256", "media_type"} <= v.keys()}


async def write_results(client: AlphaSaga, dest: Path, outcome: SagaEvent) -> Path:
    """``dest/outcome.json``, plus the artifacts the last step referenced."""
    from alphasaga_contracts import saga as sg

    dest.mkdir(parents=True, exist_ok=True)
    (dest / "outcome.json").write_text(json.dumps(outcome.model_dump(mode="json"), indent=2) + "\n")
    if isinstance(outcome, sg.SagaCompleted):
        for name, ref in _artifact_refs(outcome.outputs).items():
            ext = _EXTENSIONS.get(ref["media_type"], ".bin")
            (dest / f"{name}{ext}").write_bytes(await client.artifact(ref["sha256"]))
    return dest


def _submit_and_wait(stack: Stack, request: ResearchRequest, timeout: float) -> int:
    config = stack.front_end_settings()

    async def go(client: AlphaSaga) -> int:
        from alphasaga_contracts import saga as sg

        submitted = await client.submit(request)
        echo(f"saga {submitted.saga_id} submitted")
        outcome = None
        async for update in client.follow(submitted.saga_id, after=submitted.follow_from, timeout_s=timeout):
            echo(f"  {describe(update.event)}")
            outcome = update.event
        assert outcome is not None
        results = await write_results(client, config.data_dir / "results" / str(submitted.saga_id), outcome)
        echo(f"outcome: {describe(outcome)}")
        echo(f"results: {results}")
        return 0 if isinstance(outcome, sg.SagaCompleted) else 1

    return with_client(go, config)


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
    from ..requests import load_request
    from ..stack import Stack

    request, _ = load_request(None, {"dataset": dataset, "start": start, "end": end, "objective": objective})
    stack = Stack(settings(), say=echo)
    try:
        stack.start()
        code = _submit_and_wait(stack, request, timeout)
    except TimeoutError as exc:
        raise CliError(str(exc)) from None
    finally:
        stack.stop()
    raise typer.Exit(code)


def _print_api_access(stack: Stack) -> None:
    """In development, a fresh admin key for the API and the explorer, so that `make up` is
    all it takes to call it or sign in to the explorer (production makes its first admin
    with `alphasaga users create`)."""
    import re

    if stack.settings.production:
        return
    config = stack.front_end_settings()

    async def go(client: AlphaSaga) -> str:
        _, key = await (await client.accounts()).create_key("alphasaga up (development)", "admin", actor="stack")
        return key

    found = re.search(r"alphasaga-api: ready on http://[^:]+:(\d+)", (stack.log_dir / "api.log").read_text())
    if found:  # the port it bound, which ALPHASAGA_API_PORT=0 leaves to the system
        echo(f"export ALPHASAGA_API_URL=http://127.0.0.1:{found.group(1)}")
        # The explorer's sign-in page takes this admin key (docs/explorer.md).
        echo(f"export ALPHASAGA_EXPLORER_URL=http://127.0.0.1:{found.group(1)}/explorer/")
    echo(f"export ALPHASAGA_API_KEY={with_client(go, config)}")


def up() -> None:
    """Start every service in the foreground until Ctrl-C.

    Work in flight is left pending for the reclaimer of the next start.

    Example: alphasaga up   # then, in another terminal: alphasaga submit --dataset sp500 --wait
    """
    from ..stack import WITH_API, Stack

    stack = Stack(settings(), say=echo, services=WITH_API)
    try:
        stack.start()
        front_end = stack.front_end_settings()
        # As shell lines, so that pasting them gives the next commands their settings.
        echo(f"export ALPHASAGA_REDIS_URL={front_end.redis_url}")
        if stack.settings.broker_url:
            echo(f"export ALPHASAGA_BROKER_URL={stack.settings.broker_url}")
        echo(f"export ALPHASAGA_DATABASE_URL={front_end.database_url}")
        if front_end.redis_url != stack.redis_url:
            echo(f"(the front ends' Redis user; admin's, for `alphasaga tail` and `dlq redrive`: {stack.redis_url})")
        _print_api_access(stack)
        echo("press Ctrl-C to stop; a service that exits is started again")
        # Blocked after the children started (they inherit the mask), so that the signal is
        # received here instead of the default action killing us without cleanup.
        stop_signals = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        received = stack.supervise(stop_signals)
        echo(f"received {received.name}")
    finally:
        echo("stopping")
        stack.stop()
