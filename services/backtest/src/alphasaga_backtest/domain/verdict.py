"""Judge a backtest against the request's constraints.

Why reasons and not just a flag: a rejected strategy should tell the researcher which
limit it broke and by how much, with the numbers, so the next hypothesis can aim.
A value exactly at a limit passes (the limits are inclusive).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from alphasaga_contracts.research import Constraints, Verdict


def judge(metrics: Mapping[str, float], constraints: Constraints) -> Verdict:
    """Accepted when every constraint holds; otherwise one reason per failed one."""
    drawdown = _metric(metrics, "max_drawdown")
    sharpe = _metric(metrics, "sharpe")
    reasons: list[str] = []
    if drawdown > constraints.max_drawdown:
        shown, limit = _distinct(drawdown, constraints.max_drawdown, "%", digits=2)
        reasons.append(f"max drawdown {shown} exceeds the limit of {limit}")
    if sharpe < constraints.min_sharpe:
        shown, limit = _distinct(sharpe, constraints.min_sharpe, "f", digits=3)
        reasons.append(f"Sharpe ratio {shown} is below the minimum of {limit}")
    return Verdict(accepted=not reasons, reasons=reasons)


def _distinct(value: float, limit: float, kind: str, *, digits: int) -> tuple[str, str]:
    """Format both numbers with enough digits that they do not read as equal."""
    for places in range(digits, digits + 8):
        shown, bound = f"{value:.{places}{kind}}", f"{limit:.{places}{kind}}"
        if shown != bound:
            break
    return shown, bound


def _metric(metrics: Mapping[str, float], name: str) -> float:
    if name not in metrics:
        raise ValueError(f"metrics lack {name!r}; got {sorted(metrics)}")
    value = float(metrics[name])
    if not math.isfinite(value):
        raise ValueError(f"metric {name!r} is not finite: {value!r}")
    return value
