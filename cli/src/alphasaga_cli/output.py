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
    from rich.table import Table

    t = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for name in columns:
        t.add_column(name, overflow="fold")
    for row in rows:
        t.add_row(*row)
    console().print(t)


def verdict_line(verdict: dict[str, Any] | None, metrics: dict[str, Any] | None) -> str:
    """The line a researcher reads first: the verdict and the numbers behind it."""
    verdict = verdict or {}
    metrics = metrics or {}
    if not verdict:
        head = "no verdict"
    elif verdict.get("accepted"):
        head = "accepted"
    else:
        head = "rejected: " + "; ".join(verdict.get("reasons") or ["?"])
    if not metrics:
        return head
    nan = float("nan")
    return (
        f"{head} (Sharpe {metrics.get('sharpe', nan):.2f}, CAGR {metrics.get('cagr', nan):.1%}, "
        f"max drawdown {metrics.get('max_drawdown', nan):.1%}, {metrics.get('n_trades', 0):.0f} trades; "
        f"buy and hold Sharpe {metrics.get('buy_and_hold_sharpe', nan):.2f})"
    )
