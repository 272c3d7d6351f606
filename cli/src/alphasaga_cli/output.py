"""Printing: JSON for scripts, plain lines and rich tables for people."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console


def console(*, err: bool = False) -> Console:
    """A console that does not wrap or colour output going to a pipe or a file."""
    from rich.console import Console

    stream = sys.stderr if err else sys.stdout
    if stream.isatty():
        return Console(file=stream, highlight=False)
    return Console(file=stream, width=240, no_color=True, highlight=False, soft_wrap=True)


def echo(text: str = "", *, err: bool = False) -> None:
    typer.echo(text, err=err)


def confirm(question: str) -> bool:
    """Ask on stderr, read one line of stdin: only an explicit yes counts. (click's prompt
    writes to stdout, which would corrupt output a script reads.)"""
    print(f"{question} [y/N]: ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline()
    if not sys.stdin.isatty():
        print(file=sys.stderr)  # the answer typed into a pipe is not echoed
    return answer.strip().lower() in ("y", "yes")


def print_json(value: Any) -> None:
    """One JSON document (or, called per item, one JSON line) on stdout."""
    typer.echo(json.dumps(value, default=str, ensure_ascii=False))


def compact(value: Any, limit: int = 0) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))
    if limit and len(text) > limit:
        return text[: limit - 1] + "…"
    return text


def table(columns: list[str], rows: list[list[str]]) -> None:
    """The cells as they are: rich would read "[out of sample …]" in a verdict, or a path in
    brackets in an error, as its markup, dropping it or failing on it."""
    from rich.table import Table
    from rich.text import Text

    t = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for name in columns:
        t.add_column(name, overflow="fold")
    for row in rows:
        t.add_row(*(Text(cell) for cell in row))
    console().print(t)


def fields(rows: list[list[str]]) -> None:
    """Name and value lines, the values aligned: what a status shows, read by people and by
    grep alike. No table library: rich costs a sixth of a status's 0.3 s (docs/cli.md)."""
    width = max((len(name) for name, _ in rows), default=0)
    for name, value in rows:
        typer.echo(f"{name:<{width}}  {value}")


def verdict_line(verdict: dict[str, Any] | None, metrics: dict[str, Any] | None) -> str:
    """The line a researcher reads first: the verdict, the period it was taken on, the
    numbers behind it, and the sandbox the strategy code ran in."""
    verdict = verdict or {}
    metrics = metrics or {}
    if not verdict:
        head = "no verdict"
    elif verdict.get("accepted"):
        head = "accepted"
    else:
        head = "rejected: " + "; ".join(verdict.get("reasons") or ["?"])
    held_out = verdict.get("period") == "out_of_sample"
    if verdict.get("start") and verdict.get("end"):
        part = "out of sample" if held_out else "whole period"
        head = f"{head} [{part} {verdict['start']} to {verdict['end']}]"
    sandbox = verdict.get("sandbox")
    tail = ""
    if sandbox:
        weaker = "" if str(sandbox).startswith("bubblewrap") else ", NOT bubblewrap: see docs/security.md"
        tail = f"; code ran in sandbox {sandbox}{weaker}"
    if not metrics:
        return head + tail
    prefix = "out_of_sample." if held_out and "out_of_sample.sharpe" in metrics else ""
    nan = float("nan")

    def get(name: str, default: float = nan) -> Any:
        return metrics.get(prefix + name, default)

    return (
        f"{head} (Sharpe {get('sharpe'):.2f}, CAGR {get('cagr'):.1%}, "
        f"max drawdown {get('max_drawdown'):.1%}, {get('n_trades', 0):.0f} trades; "
        f"buy and hold Sharpe {get('buy_and_hold_sharpe'):.2f}){tail}"
    )


def trace_link(saga_id: Any, traceparent: str) -> str:
    """The saga's trace id, and its page in Jaeger's UI when ``ALPHASAGA_JAEGER_URL`` is
    set (e.g. http://localhost:16686)."""
    import os

    from alphasaga_contracts.tracing import saga_trace_id

    trace_id = saga_trace_id(saga_id, traceparent)
    jaeger = os.environ.get("ALPHASAGA_JAEGER_URL", "").rstrip("/")
    return f"{trace_id} ({jaeger}/trace/{trace_id})" if jaeger else trace_id
