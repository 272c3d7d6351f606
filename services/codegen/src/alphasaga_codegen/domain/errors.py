"""Exceptions of the codegen domain.

Two families, because the caller reacts differently: ``StrategyRejected`` means the
hypothesis or its code is bad (retrying cannot help, the saga records a rejection), while
``SandboxError`` means the machinery failed (an operator problem, possibly transient).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

LimitName = Literal["cpu_time", "memory", "wall_clock"]


class CodegenError(Exception):
    """Base class of every error raised by the codegen domain."""


class StrategyRejected(CodegenError):
    """The hypothesis or the strategy code cannot be accepted."""


class RenderError(StrategyRejected, ValueError):
    """The hypothesis asks for something the templates cannot express."""


class RuleViolation(StrategyRejected):
    """The source breaks one of the static rules in ``validate``."""

    def __init__(self, rule: str, detail: str, line: int | None = None) -> None:
        self.rule = rule
        self.detail = detail
        self.line = line
        where = f" (line {line})" if line is not None else ""
        super().__init__(f"{rule}: {detail}{where}")


class SandboxLimitExceeded(StrategyRejected):
    """The strategy ran out of CPU time, memory or wall-clock time."""

    def __init__(self, limit: LimitName, detail: str) -> None:
        self.limit: LimitName = limit
        self.detail = detail
        super().__init__(f"{limit} limit exceeded: {detail}")


class StrategyRuntimeError(StrategyRejected):
    """The strategy raised, crashed, or returned something unusable."""

    def __init__(self, detail: str, traceback_tail: str = "") -> None:
        self.detail = detail
        self.traceback_tail = traceback_tail
        message = detail if not traceback_tail else f"{detail}\n{traceback_tail}"
        super().__init__(message)


class StrategyOutputError(StrategyRuntimeError):
    """The entry points returned, but their output breaks the contract."""


class UnreadableOutput(StrategyRejected):
    """What the sandbox handed back cannot be accepted as an output at all: not a regular
    file, larger than its cap, malformed, or not there whole by its deadline. The service
    killed the sandbox; the code in it is hostile or broken, and retrying cannot help."""


class LookaheadDetected(StrategyRejected):
    """Values computed without the real future differ from the full-data values.

    ``cutoff_date`` is the last bar the variant left unchanged; ``first_mismatch_date``
    is the earliest date whose value changed with the bars after it.
    """

    def __init__(
        self,
        cutoff_date: dt.datetime,
        first_mismatch_date: dt.datetime,
        column: str | None = None,
        detail: str = "",
    ) -> None:
        self.cutoff_date = cutoff_date
        self.first_mismatch_date = first_mismatch_date
        self.column = column
        self.detail = detail
        what = f"column {column!r}" if column is not None else "output"
        message = f"look-ahead: {what} at {first_mismatch_date:%Y-%m-%d} depends on bars after {cutoff_date:%Y-%m-%d}"
        super().__init__(f"{message}; {detail}" if detail else message)


class SandboxError(CodegenError):
    """The sandbox itself failed to start or to hand back results."""


class SandboxUnavailable(SandboxError):
    """The requested sandbox kind cannot be used on this machine."""
