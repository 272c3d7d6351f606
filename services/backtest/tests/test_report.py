"""Report and chart artifacts: valid, complete and byte-for-byte reproducible."""

from __future__ import annotations

import json
import struct

import numpy as np
import pandas as pd
import pytest

from alphasaga_backtest.domain.engine import BacktestResult, run_backtest
from alphasaga_backtest.domain.metrics import compute_metrics
from alphasaga_backtest.domain.report import CHART_DPI, CHART_SIZE_INCHES, build_report, render_chart
from alphasaga_backtest.domain.verdict import judge
from alphasaga_contracts.research import Constraints

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _result() -> BacktestResult:
    rng = np.random.default_rng(12)
    n = 400
    close = 100 * np.exp(np.cumsum(rng.normal(0.0003, 0.01, n)))
    index = pd.date_range("2015-01-02", periods=n, freq="B", name="date")
    bars = pd.DataFrame({"close": close}, index=index)
    target = pd.Series(np.repeat(rng.choice([-1.0, 0.0, 1.0], size=n // 20), 20), index=index)
    return run_backtest(bars, target, commission_bps=5, slippage_bps=2)


def _report(result: BacktestResult) -> bytes:
    metrics = compute_metrics(result, trials=3)
    verdict = judge(metrics, Constraints())
    parameters = {"threshold": np.float64(0.55), "horizon": np.int64(5), "seed": 7, "signal": "ma_crossover"}
    return build_report(result, metrics, verdict, parameters=parameters)


def test_report_is_deterministic_and_complete() -> None:
    result = _result()
    first, second = _report(result), _report(_result())
    assert first == second
    document = json.loads(first)
    assert set(document) == {
        "schema", "period", "periods", "costs", "fill", "metrics", "verdict", "notes", "trades", "parameters", "equity",
    }  # fmt: skip
    assert document["fill"] == "close"
    last = result.returns.index[-1].date().isoformat()
    assert document["period"] == {"start": "2015-01-02", "end": last, "bars": 400}
    assert document["costs"] == {"commission_bps": 5.0, "slippage_bps": 2.0}
    assert document["parameters"] == {"threshold": 0.55, "horizon": 5, "seed": 7, "signal": "ma_crossover"}
    assert set(document["verdict"]) == {"accepted", "reasons", "period", "start", "end", "sandbox"}
    assert len(document["trades"]) == len(result.trades) > 0
    trade = document["trades"][0]
    assert set(trade) == {
        "entry_date",
        "exit_date",
        "direction",
        "bars",
        "entry_price",
        "exit_price",
        "return",
        "is_open",
    }
    assert trade["entry_date"] == result.trades["entry_date"].iloc[0].date().isoformat()
    assert document["metrics"]["n_trades"] == len(result.trades)


def test_report_keys_are_sorted_and_the_text_is_ascii() -> None:
    raw = _report(_result())
    raw.decode("ascii")
    document = json.loads(raw)
    assert list(document) == sorted(document)
    assert list(document["metrics"]) == sorted(document["metrics"])
    assert json.dumps(document, sort_keys=True, indent=2) + "\n" == raw.decode()


def test_non_finite_values_are_refused() -> None:
    result = _result()
    metrics = compute_metrics(result)
    verdict = judge(metrics, Constraints())
    with pytest.raises(ValueError, match="non-finite"):
        build_report(result, metrics, verdict, parameters={"bad": float("inf")})
    with pytest.raises(TypeError, match="object"):
        build_report(result, metrics, verdict, parameters={"bad": object()})


def test_chart_is_a_png_of_the_fixed_size_and_reproducible() -> None:
    result = _result()
    png = render_chart(result)
    assert png.startswith(PNG_SIGNATURE)
    assert png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (int(CHART_SIZE_INCHES[0] * CHART_DPI), int(CHART_SIZE_INCHES[1] * CHART_DPI))
    assert png.endswith(b"IEND\xaeB`\x82")
    assert render_chart(result) == png
    assert b"Software" not in png


def test_the_chart_marks_the_out_of_sample_part() -> None:
    result = _result()
    plain = render_chart(result)
    marked = render_chart(result, split=result.returns.index[280])
    assert marked.startswith(b"\x89PNG") and marked != plain
