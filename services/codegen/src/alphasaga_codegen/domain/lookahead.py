"""Check, empirically, that no bar's output uses bars from its future.

A strategy is causal when the features and signal at bar ``s`` stay the same whatever
happens after ``s``. For a set of cuts ``c`` the strategy runs again on bars it could
not tell apart from the real ones up to ``c``, and every output at bars ``0..c`` is
compared with the full-data run:

* **mirrored** runs keep every date but replace each bar after ``c`` by its mirror
  image around the close at ``c`` (a rise becomes a fall of the same size, volume
  changed too). A value that reads a later close, ``.iloc[-1]``, a ``bfill`` or an
  ``interpolate`` across the cut changes, and a comparison between a later close and
  the close at ``c`` (``close.shift(-1) > close``) flips for certain rather than by
  chance;
* **truncated** runs see only bars ``0..c``, as a live run would at ``c``: they also
  catch values that depend on how many bars there are or on the last date.

Cuts (``cut_points``): every bar of the first ``EDGE`` and of the last ``EDGE`` bars
before the final one, and ``MIDDLE_CUTS`` evenly spaced in between (mirrored); and
``TRUNCATIONS`` truncated runs spread evenly, the last at the bar before the final one.
So every bar's output but the final bar's (which has no future) is compared at least
once. What is caught, precisely: a value at bar ``s`` that reads up to ``k`` bars ahead
is caught when a cut falls in ``[s, s + k - 1]`` and the peeked bars change its value:
at every bar of the first and last ``EDGE`` bars, anywhere for peeks longer than the
spacing of the middle cuts (``len(bars) / MIDDLE_CUTS``, about 150 bars on 5,000), and
for shorter peeks only where one reaches a cut. It remains a test, not a proof.

All runs share one sandbox process (the runner imports the strategy afresh for each),
which costs one start-up instead of one per run; the comparison is done there too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from .errors import LookaheadDetected
from .sandbox import DEFAULT_LIMITS, Sandbox, SandboxLimits, SandboxMode, SandboxResult, run_strategy

RTOL = 1e-9
ATOL = 1e-12
MIN_BARS = 8
EDGE = 8
MIDDLE_CUTS = 32
TRUNCATIONS = 4


@dataclass(frozen=True)
class CutPoints:
    """Positions (0-based) of the last bar each variant leaves unchanged."""

    mirrored: tuple[int, ...]
    truncated: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class LookaheadReport:
    """A passed check: where the data was cut and how much was compared.

    ``sandbox`` is the full-data run, so callers need not run the strategy again.
    """

    cuts: CutPoints
    columns: tuple[str, ...]
    runs: int
    values_compared: int
    rtol: float
    atol: float
    sandbox: SandboxResult


def cut_points(
    n_bars: int, *, edge: int = EDGE, middle: int = MIDDLE_CUTS, truncations: int = TRUNCATIONS
) -> CutPoints:
    """The cuts of the module docstring for ``n_bars`` bars; deterministic, so a verdict
    is reproducible."""
    if n_bars < MIN_BARS:
        raise ValueError(f"need at least {MIN_BARS} bars to check look-ahead")
    if min(edge, middle, truncations) < 1:
        raise ValueError("edge, middle and truncations must be at least 1")
    last = n_bars - 2  # the final bar has no future to peek at
    mirrored = {*range(min(edge, last + 1)), *range(max(0, last - edge + 1), last + 1)}
    mirrored |= {round(i * last / (middle + 1)) for i in range(1, middle + 1)}
    truncated = {round(i * last / truncations) for i in range(1, truncations + 1)}
    return CutPoints(mirrored=tuple(sorted(mirrored)), truncated=tuple(sorted(truncated)))


def check_no_lookahead(
    source: str,
    bars: pd.DataFrame,
    *,
    limits: SandboxLimits = DEFAULT_LIMITS,
    mode: SandboxMode = "auto",
    cuts: CutPoints | None = None,
    sandbox: Sandbox | None = None,
) -> LookaheadReport:
    """Run ``source`` on ``bars`` and on every variant; raise ``LookaheadDetected``.

    Features are compared as well as the signal: the model downstream trains on them,
    so a leaking feature is as harmful as a leaking signal. With ``sandbox`` the runs go
    to its runner started ahead (``limits`` and ``mode`` are then its own).
    """
    cuts = cuts or cut_points(len(bars))
    request = {"mirrors": list(cuts.mirrored), "truncations": list(cuts.truncated), "rtol": RTOL, "atol": ATOL}
    if sandbox is not None:
        result = sandbox.run(source, bars, lookahead=request)
    else:
        result = run_strategy(source, bars, limits=limits, lookahead=request, mode=mode)
    if result.mismatch is not None:
        raise _detected(bars.index, result.mismatch)
    return LookaheadReport(
        cuts=cuts,
        columns=tuple(str(c) for c in result.frame.columns),
        runs=result.runs,
        values_compared=result.values_compared,
        rtol=RTOL,
        atol=ATOL,
        sandbox=result,
    )


def _detected(index: pd.DatetimeIndex, mismatch: Mapping[str, object]) -> LookaheadDetected:
    cut, row = int(str(mismatch["cut"])), int(str(mismatch["row"]))
    column = mismatch.get("column")
    how = "truncated after" if mismatch.get("kind") == "truncated" else "mirrored after"
    cutoff: dt.datetime = index[cut]
    return LookaheadDetected(
        cutoff,
        index[row],
        column=None if column is None else str(column),
        detail=f"{mismatch.get('got')} with the bars {how} {cutoff:%Y-%m-%d}, {mismatch.get('expected')} on all bars",
    )
