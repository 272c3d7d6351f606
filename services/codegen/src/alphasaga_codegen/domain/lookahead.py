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

Each run is a process of its own that holds only the bars its variant may see: the
variants are made here, in the service, and so is every comparison, on the outputs
alone. Nothing a strategy does inside a run can reach another run's bars or the check.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from .errors import LookaheadDetected
from .sandbox import (
    ALL_BARS,
    DEFAULT_LIMITS,
    Sandbox,
    SandboxLimits,
    SandboxMode,
    SandboxResult,
    resolve_sandbox,
)

RTOL = 1e-9
ATOL = 1e-12
MIN_BARS = 8
EDGE = 8
MIDDLE_CUTS = 32
TRUNCATIONS = 4
PRICE_COLUMNS = ("open", "high", "low", "close")


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


@dataclass(frozen=True)
class Variant:
    """One run of the check: ``kind`` (truncated, mirrored or full) and the last bar it
    leaves as it is."""

    kind: str
    cut: int

    @property
    def label(self) -> str:
        """Where a failure happened, as its message says it."""
        return ALL_BARS if self.kind == "full" else f"on {self.kind} bars, cut after bar {self.cut}"


def variants(cuts: CutPoints, n_bars: int) -> list[Variant]:
    """Truncated runs first, then mirrored ones, the full data last."""
    found = [Variant("truncated", t) for t in cuts.truncated]
    found += [Variant("mirrored", c) for c in cuts.mirrored]
    return [*found, Variant("full", n_bars - 1)]


def variant_bars(bars: pd.DataFrame, variant: Variant) -> pd.DataFrame:
    """The bars a variant sees: the first ``cut + 1`` bars, or all with a mirrored future.

    Mirrored: after the cut every price is scaled so that the close becomes
    ``close[cut]**2 / close[t]`` (a rise becomes a fall of the same size, intrabar shape
    kept) and the volume changes too; the dates stay, so the bars' length does not tell.
    """
    cut = variant.cut
    if variant.kind == "truncated":
        return bars.iloc[: cut + 1]
    if variant.kind == "full":
        return bars
    names = bars.columns.tolist()
    mirrored = [i for i, name in enumerate(names) if name in (*PRICE_COLUMNS, "volume")]
    if set(bars.dtypes.tolist()) == {np.dtype("float64")}:  # the usual bars: one block, one copy
        values = bars.to_numpy(copy=True)
        columns = list(values.T)
    else:
        values = None
        columns = [
            bars[name].to_numpy(dtype="float64" if i in mirrored else None, copy=True) for i, name in enumerate(names)
        ]
    close = columns[names.index("close")]
    factor = (close[cut] / close[cut + 1 :]) ** 2
    for i in mirrored:
        tail = columns[i][cut + 1 :]
        tail[:] = tail * 1.5 + 1 if names[i] == "volume" else tail * factor
    if values is not None:
        return pd.DataFrame(values, index=bars.index, columns=bars.columns, copy=False)
    return pd.DataFrame(dict(zip(names, columns, strict=True)), index=bars.index, copy=False)


def check_no_lookahead(
    source: str,
    bars: pd.DataFrame,
    *,
    limits: SandboxLimits = DEFAULT_LIMITS,
    mode: SandboxMode = "auto",
    cuts: CutPoints | None = None,
    sandbox: Sandbox | None = None,
    validate: bool = True,
) -> LookaheadReport:
    """Run ``source`` on every variant and on ``bars``; raise ``LookaheadDetected``.

    Features are compared as well as the signal: the model downstream trains on them,
    so a leaking feature is as harmful as a leaking signal. With ``sandbox`` the runs go
    to its zygote, started ahead (``limits`` and ``mode`` are then its own).
    ``validate=False`` is for the escape tests, which measure the check without the
    checker in front of it.
    """
    cuts = cuts or cut_points(len(bars))
    planned = variants(cuts, len(bars))
    runs = [(variant.label, variant_bars(bars, variant)) for variant in planned]
    if sandbox is None:
        sandbox = Sandbox(resolve_sandbox(mode), limits, ahead=False)
    result = sandbox.run(source, runs, validate=validate)
    full = result.frame
    mismatches = [
        found
        for variant, frame in zip(planned[:-1], result.outputs[:-1], strict=True)
        if (found := compare(full, frame, variant)) is not None
    ]
    if mismatches:
        raise _detected(bars.index, min(mismatches, key=lambda m: (m.row, m.variant.cut)))
    return LookaheadReport(
        cuts=cuts,
        columns=tuple(str(c) for c in full.columns),
        runs=result.runs,
        values_compared=sum(
            min(len(frame), variant.cut + 1) * frame.shape[1]
            for variant, frame in zip(planned[:-1], result.outputs[:-1], strict=True)
        ),
        rtol=RTOL,
        atol=ATOL,
        sandbox=result,
    )


@dataclass(frozen=True)
class Mismatch:
    """The first value up to a variant's cut that differs from the full run."""

    variant: Variant
    row: int
    column: str
    got: str
    expected: str


def compare(full: pd.DataFrame, frame: pd.DataFrame, variant: Variant) -> Mismatch | None:
    """The first row up to the cut where ``frame`` differs from ``full``, if any.

    NaN equals NaN; other values must agree within ``RTOL``/``ATOL``, which absorbs
    nothing but floating-point noise.
    """
    if list(frame.columns) != list(full.columns):
        return Mismatch(variant, 0, "", str(list(frame.columns)), str(list(full.columns)))
    rows = variant.cut + 1
    got = frame.to_numpy(dtype="float64")[:rows]
    expected = full.to_numpy(dtype="float64")[:rows]
    differs = ~np.isclose(got, expected, rtol=RTOL, atol=ATOL, equal_nan=True)
    if not differs.any():
        return None
    row = int(np.argmax(differs.any(axis=1)))
    column = int(np.argmax(differs[row]))
    shown = (repr(float(got[row, column])), repr(float(expected[row, column])))
    return Mismatch(variant, row, str(full.columns[column]), *shown)


def _detected(index: pd.DatetimeIndex, mismatch: Mismatch) -> LookaheadDetected:
    how = "truncated after" if mismatch.variant.kind == "truncated" else "mirrored after"
    cutoff: dt.datetime = index[mismatch.variant.cut]
    return LookaheadDetected(
        cutoff,
        index[mismatch.row],
        column=mismatch.column or None,
        detail=f"{mismatch.got} with the bars {how} {cutoff:%Y-%m-%d}, {mismatch.expected} on all bars",
    )
