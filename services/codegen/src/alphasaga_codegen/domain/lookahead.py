"""Prove, empirically, that a strategy does not use bars from its future.

For a few cut points t the strategy runs on ``bars[:t]`` as well as on all bars; a
causal strategy gives the same features and signal for every date before the cut,
because adding later bars cannot change what was known then. Cuts are spread over the
second half, where every indicator has warmed up, and are deterministic so that a
verdict is reproducible.

All runs share one sandbox process (the runner imports the strategy afresh for each
and runs the shortest prefix first), which costs one start-up instead of cutoffs + 1.

The check is a test, not a proof: a peek that changes a value only at bars that are
never the last bar before a cut goes unnoticed, and a peek whose effect is a coin flip
(``close.shift(-1) > close`` at the last bar) is caught at each cut with probability
one half, so at least ``1 - 2**-cutoffs`` overall.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from .errors import LookaheadDetected
from .sandbox import DEFAULT_LIMITS, SandboxLimits, SandboxMode, SandboxResult, run_strategy

RTOL = 1e-9
ATOL = 1e-12
MIN_BARS = 8


@dataclass(frozen=True, eq=False)
class LookaheadReport:
    """A passed check: where the data was cut and how much was compared.

    ``cutoff_dates`` are the last bars each truncated run saw; ``sandbox`` is the
    full-data run, so callers need not run the strategy again.
    """

    cutoff_positions: tuple[int, ...]
    cutoff_dates: tuple[dt.datetime, ...]
    columns: tuple[str, ...]
    values_compared: int
    rtol: float
    atol: float
    sandbox: SandboxResult


def cutoff_positions(n_bars: int, cutoffs: int = 4) -> list[int]:
    """Prefix lengths evenly spaced from the middle of the data towards its end."""
    if cutoffs < 1:
        raise ValueError("cutoffs must be at least 1")
    if n_bars < MIN_BARS:
        raise ValueError(f"need at least {MIN_BARS} bars to check look-ahead")
    half = n_bars // 2
    return sorted({half + (i * (n_bars - half)) // cutoffs for i in range(cutoffs)})


def check_no_lookahead(
    source: str,
    bars: pd.DataFrame,
    *,
    cutoffs: int = 4,
    limits: SandboxLimits = DEFAULT_LIMITS,
    mode: SandboxMode = "auto",
) -> LookaheadReport:
    """Run ``source`` on ``bars`` and on prefixes of it; raise ``LookaheadDetected``.

    Features are compared as well as the signal: the model downstream trains on them,
    so a leaking feature is as harmful as a leaking signal.
    """
    positions = cutoff_positions(len(bars), cutoffs)
    result = run_strategy(source, bars, limits=limits, truncations=positions, mode=mode)
    compared = 0
    for t in positions:
        compared += compare_prefix(result.frame, result.truncated[t])
    return LookaheadReport(
        cutoff_positions=tuple(positions),
        cutoff_dates=tuple(bars.index[t - 1] for t in positions),
        columns=tuple(str(c) for c in result.frame.columns),
        values_compared=compared,
        rtol=RTOL,
        atol=ATOL,
        sandbox=result,
    )


def compare_prefix(full: pd.DataFrame, truncated: pd.DataFrame) -> int:
    """Raise ``LookaheadDetected`` unless ``truncated`` equals the start of ``full``.

    NaN equals NaN; other values must agree within ``RTOL``/``ATOL``, which absorbs
    nothing but floating-point noise. Returns the number of values compared.
    """
    cutoff_date = truncated.index[-1]
    expected = full.iloc[: len(truncated)]
    if list(truncated.columns) != list(expected.columns):
        raise LookaheadDetected(
            cutoff_date,
            truncated.index[0],
            detail=f"columns {list(truncated.columns)} on truncated data, {list(expected.columns)} on all data",
        )
    first: tuple[int, str] | None = None
    for column in expected.columns:
        a = truncated[column].to_numpy(dtype="float64")
        b = expected[column].to_numpy(dtype="float64")
        mismatch = ~np.isclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True)
        if mismatch.any():
            position = int(np.argmax(mismatch))
            if first is None or position < first[0]:
                first = (position, str(column))
    if first is not None:
        position, column = first
        raise LookaheadDetected(
            cutoff_date,
            truncated.index[position],
            column=column,
            detail=f"{truncated[column].iloc[position]!r} on truncated data, "
            f"{expected[column].iloc[position]!r} on all data",
        )
    return int(expected.size)
