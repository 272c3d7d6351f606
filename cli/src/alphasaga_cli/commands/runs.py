"""Runs against each other: ``fork`` (a new saga from a step of an old one, the steps
before it reused) and ``diff`` (where two sagas part, and what differs step by step)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import NOT_COMPLETED, OK, CliError
from ..output import echo, print_json
from ..session import with_client
from .research import JsonFlag, SagaArg, watch_until_end

if TYPE_CHECKING:
    from alphasaga_client import AlphaSaga
    from alphasaga_client.rundiff import RunDiff


def _settings(pairs: list[str]) -> dict[str, Any]:
    """``--set path=value`` pairs; a value is read as JSON when it is JSON (10, true,
    "x", [1]), else as text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        path, sep, raw = pair.partition("=")
        if not sep or not path:
            raise CliError(f"--set takes path=value, not {pair!r}")
        try:
            out[path] = json.loads(raw)
        except json.JSONDecodeError:
            out[path] = raw
    return out


def fork(
    saga: SagaArg,
    from_step: Annotated[
        str, typer.Option("--from-step", help="Run again from this step; the steps it needs are reused")
    ],
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="path=value changed in the new saga: request.<field>, or a step's input or output by name "
            "(model_kind=linear, hypothesis.label_horizon=10); repeatable",
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the new saga until it ends; exit 0 if it completed")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait")] = 900,
    as_json: JsonFlag = False,
) -> None:
    """Start a new saga from a step of an old one.

    The steps that step needs are not run again: their outputs, and the artifacts they
    name (content-addressed, so nothing is copied), are the old saga's. The new saga runs
    from the step on, with what --set changes, and records where it was forked from in its
    first event.

    Example: alphasaga fork 3f1c2a9e --from-step ml --set model_kind=linear --wait

    Example: alphasaga fork 3f1c2a9e --from-step ml --set hypothesis.label_horizon=10
    """
    changes = _settings(set_ or [])

    async def go(client: AlphaSaga) -> int:
        await client.connect()
        sent = await client.fork(saga, from_step, changes)  # a fork that cannot be is InvalidRequest
        if not wait:
            if as_json:
                print_json({"saga_id": str(sent.saga_id), "message_id": sent.message_id})
            else:
                echo(str(sent.saga_id))
            return OK
        echo(f"saga {sent.saga_id} forked", err=as_json)
        progress = await watch_until_end(client, sent.saga_id, timeout=timeout, as_json=as_json)
        return OK if progress.state == "COMPLETED" else NOT_COMPLETED

    raise typer.Exit(with_client(go))


def diff(
    a: SagaArg,
    b: Annotated[str, typer.Argument(help="The other saga (an id or a unique prefix)")],
    as_json: JsonFlag = False,
) -> None:
    """Compare two sagas: the first event where they diverge, then step by step the inputs,
    outputs and metrics that differ. A fork's reused steps are the same work on both sides.

    Example: alphasaga diff 3f1c2a9e 7b20c4d1

    Example: alphasaga diff 3f1c2a9e 7b20c4d1 --json
    """

    async def go(client: AlphaSaga) -> RunDiff:
        return await client.diff(a, b)

    found = with_client(go)
    if as_json:
        print_json(found.as_json())
        return
    for line in _lines(found):
        echo(line)


def _lines(found: RunDiff) -> list[str]:
    from alphasaga_client.timetravel import ABSENT

    def value(v: Any) -> str:
        return "-" if v is ABSENT else json.dumps(v, default=str, ensure_ascii=False)

    lines = [f"a {found.a}", f"b {found.b}"]
    d = found.first_divergence
    if d is None:
        lines.append("the logs do not diverge")
    else:
        a_side = f"a #{d.a_number or '-'} {d.a_event or '(ended)'}"
        lines.append(f"first divergence: {a_side} | b #{d.b_number or '-'} {d.b_event or '(ended)'}")
        lines += [f"    {c.path}: {value(c.before)} -> {value(c.after)}" for c in d.changes]
    for step in found.steps:
        if step.only_in is not None:
            lines.append(f"{step.step}: only in {step.only_in}")
            continue
        lines.append(f"{step.step}:")
        for what, changes in (("input", step.inputs), ("output", step.outputs), ("metric", step.metrics)):
            lines += [f"    {what} {c.path}: {value(c.before)} -> {value(c.after)}" for c in changes]
    return lines
