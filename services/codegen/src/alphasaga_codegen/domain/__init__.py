"""Codegen domain: hypothesis -> strategy source -> checked, sandboxed signals.

Plain functions with no messaging or storage, so the service layer only moves bytes:

``render_strategy``      hypothesis -> readable Python module (Jinja2 templates)
``validate_strategy``    AST allow-list; raises ``RuleViolation``
``run_strategy``         executes the entry points in a confined, limited process
``check_no_lookahead``   runs each variant in a process of its own and compares them
                         with the full-data run, here, outside the sandbox
``generate_strategy``    all four in order
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from alphasaga_contracts.research import Hypothesis

from .errors import (
    CodegenError,
    LookaheadDetected,
    RenderError,
    RuleViolation,
    SandboxError,
    SandboxLimitExceeded,
    SandboxUnavailable,
    StrategyOutputError,
    StrategyRejected,
    StrategyRuntimeError,
    UnreadableOutput,
)
from .lookahead import CutPoints, LookaheadReport, check_no_lookahead, cut_points
from .render import hypothesis_sha256, render_strategy
from .sandbox import (
    DEFAULT_LIMITS,
    Sandbox,
    SandboxKind,
    SandboxLimits,
    SandboxMode,
    SandboxProbe,
    SandboxResult,
    bubblewrap_available,
    namespaces_available,
    probe_sandbox,
    resolve_sandbox,
    run_strategy,
)
from .validate import find_violations, validate_strategy

__all__ = [
    "DEFAULT_LIMITS",
    "CodegenError",
    "CutPoints",
    "GeneratedStrategy",
    "LookaheadDetected",
    "LookaheadReport",
    "RenderError",
    "RuleViolation",
    "Sandbox",
    "SandboxError",
    "SandboxKind",
    "SandboxLimitExceeded",
    "SandboxLimits",
    "SandboxMode",
    "SandboxProbe",
    "SandboxResult",
    "SandboxUnavailable",
    "StrategyOutputError",
    "StrategyRejected",
    "StrategyRuntimeError",
    "UnreadableOutput",
    "bubblewrap_available",
    "check_no_lookahead",
    "cut_points",
    "find_violations",
    "generate_strategy",
    "hypothesis_sha256",
    "namespaces_available",
    "probe_sandbox",
    "render_strategy",
    "resolve_sandbox",
    "run_strategy",
    "validate_strategy",
]


@dataclass(frozen=True, eq=False)
class GeneratedStrategy:
    """A strategy that rendered, validated, ran and showed no look-ahead.

    ``signals_frame`` is the full-data output (features plus ``signal``, indexed like
    the bars); it is the same frame as ``sandbox.frame``.
    """

    source: str
    signals_frame: pd.DataFrame
    sandbox: SandboxResult
    lookahead_report: LookaheadReport


def generate_strategy(
    h: Hypothesis,
    bars: pd.DataFrame,
    limits: SandboxLimits = DEFAULT_LIMITS,
    *,
    mode: SandboxMode = "auto",
) -> GeneratedStrategy:
    """Render, validate, run and look-ahead-check ``h`` on ``bars`` in one sandbox.

    Raises a ``StrategyRejected`` subclass when the strategy is unacceptable and a
    ``SandboxError`` when the sandbox itself fails.
    """
    source = render_strategy(h)
    validate_strategy(source)
    report = check_no_lookahead(source, bars, limits=limits, mode=mode)
    return GeneratedStrategy(
        source=source,
        signals_frame=report.sandbox.frame,
        sandbox=report.sandbox,
        lookahead_report=report,
    )
