"""Pure backtest domain logic: execution, gating, metrics, verdict and report.

No broker, no database: plain functions on pandas objects, so the message handlers
stay thin and every number can be checked by hand in a test.
"""

from alphasaga_backtest.domain.engine import BacktestError, BacktestResult, period, run_backtest
from alphasaga_backtest.domain.gating import gate_signal
from alphasaga_backtest.domain.metrics import (
    annual_to_period_variance,
    compute_metrics,
    deflated_sharpe_label,
    deflated_sharpe_ratio,
)
from alphasaga_backtest.domain.report import build_report, render_chart
from alphasaga_backtest.domain.verdict import judge

__all__ = [
    "BacktestError",
    "BacktestResult",
    "annual_to_period_variance",
    "build_report",
    "compute_metrics",
    "deflated_sharpe_label",
    "deflated_sharpe_ratio",
    "gate_signal",
    "judge",
    "period",
    "render_chart",
    "run_backtest",
]
