"""Next-bar execution, costs and trades, checked against numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alphasaga_backtest.domain.engine import BacktestError, period, run_backtest


def _bars(close: list[float] | np.ndarray) -> pd.DataFrame:
    close = np.asarray(close, dtype=float)
    index = pd.date_range("2020-01-01", periods=len(close), freq="D", name="date")
    return pd.DataFrame(
        {"open": close, "high": close, "low": close, "close": close, "volume": 1.0},
        index=index,
    )


def _random_bars(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return _bars(100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n))))


def _target(bars: pd.DataFrame, values: list[float] | np.ndarray) -> pd.Series:
    return pd.Series(np.asarray(values, dtype=float), index=bars.index)


def test_hand_computed_case_with_costs() -> None:
    bars = _bars([100.0, 110.0, 99.0, 99.0, 89.1])  # +10%, -10%, 0%, -10%
    target = _target(bars, [1, 1, 0, -1, 0])
    result = run_backtest(bars, target, commission_bps=5, slippage_bps=5)  # rate 0.001

    np.testing.assert_array_equal(result.positions.to_numpy(), [0, 1, 1, 0, -1])
    # entry from flat: buys E/1.001 and pays 0.001 E/1.001; exit: pays 0.001 of all it sells
    np.testing.assert_allclose(result.costs.to_numpy(), [0, 0.001 / 1.001, 0, 0.001, 0.001 / 1.001])
    # r = (1 - cost) x (1 + held x price return) - 1
    expected = [0.0, 1.1 / 1.001 - 1, -0.10, -0.001, 1.1 / 1.001 - 1]
    np.testing.assert_allclose(result.returns.to_numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(result.equity.to_numpy(), np.cumprod(1 + np.array(expected)))
    assert result.equity.iloc[0] == 1.0
    assert result.cost_rate == pytest.approx(0.001)

    trades = result.trades
    assert list(trades["direction"]) == ["long", "short"]
    assert list(trades["entry_date"]) == [bars.index[0], bars.index[3]]
    assert list(trades["exit_date"]) == [bars.index[2], bars.index[4]]
    assert list(trades["bars"]) == [2, 1]
    assert list(trades["entry_price"]) == [100.0, 99.0]
    assert list(trades["exit_price"]) == [99.0, 89.1]
    assert list(trades["is_open"]) == [False, True]
    long_return = 1.1 / 1.001 * 0.9 * 0.999 - 1  # entry, hold, exit cost
    short_return = 1.1 / 1.001 - 1  # still open: no exit cost
    np.testing.assert_allclose(trades["return"].to_numpy(), [long_return, short_return])


def test_costs_reduce_equity_by_exactly_the_traded_notional_times_the_rate() -> None:
    """The issue's acceptance, in dollars: an entry, a partial sale, a flip and an exit."""
    bars = _bars([100.0, 110.0, 99.0, 99.0, 108.9])  # +10%, -10%, 0%, +10%
    target = _target(bars, [1.0, 0.5, -0.5, 0.0, 0.0])
    result = run_backtest(bars, target, commission_bps=7, slippage_bps=3)  # rate 0.001
    dollars = 10_000 * result.equity.to_numpy()

    # close 0, buy 0 -> 1 of 10,000: T + 0.001 T = 10,000
    e0 = 10_000.0
    t0 = e0 / 1.001
    post0 = e0 - 0.001 * t0
    assert post0 == pytest.approx(t0, rel=1e-15)  # 1.0 of what is left, not of 10,000
    e1 = post0 * 1.10  # bar 1: long 1.0, +10%
    # close 1, sell down 1 -> 0.5: T = e1 - 0.5 E' and E' = e1 - 0.001 T
    t1 = 0.5 * e1 / 0.9995
    post1 = e1 - 0.001 * t1
    e2 = post1 * (1 - 0.5 * 0.10)  # bar 2: long 0.5, -10%
    # close 2, flip 0.5 -> -0.5: T = 0.5 e2 + 0.5 E' and E' = e2 - 0.001 T
    t2 = e2 / 1.0005
    post2 = e2 - 0.001 * t2
    e3 = post2  # bar 3: short 0.5, 0%
    # close 3, buy back 0.5 E' = 0.5 e3: T = 0.5 e3
    t3 = 0.5 * e3
    post3 = e3 - 0.001 * t3
    e4 = post3  # bar 4: flat

    np.testing.assert_allclose(dollars, [e0, e1, e2, e3, e4], rtol=1e-13)
    before = np.array([e0, e1, e2, e3])  # equity just before each fill
    traded = np.array([t0, t1, t2, t3])
    np.testing.assert_allclose(result.costs.to_numpy()[1:] * before, 0.001 * traded, rtol=1e-13)
    # each traded value is the change in position value across its fill, sized on E'
    after = before - 0.001 * traded
    held = result.positions.to_numpy()
    np.testing.assert_allclose(np.abs(held[1:] * after - held[:-1] * before), traded, rtol=1e-13)


def test_a_flip_closes_one_trade_and_opens_the_next_at_the_same_close() -> None:
    bars = _bars([100.0, 110.0, 99.0, 89.1, 89.1])  # +10%, -10%, -10%, 0%
    target = _target(bars, [1, -1, -1, 0, 0])
    result = run_backtest(bars, target, commission_bps=10, slippage_bps=0)  # rate 0.001

    np.testing.assert_array_equal(result.positions.to_numpy(), [0, 1, -1, -1, 0])
    # the flip sells E of stock and shorts all that is left, E' = E - 0.001 (E + E'), so
    # E' = E x 0.999 / 1.001: exactly the exit (x 0.999) then an entry from flat (/ 1.001)
    expected = [0.0, 1.1 / 1.001 - 1, 1.1 * 0.999 / 1.001 - 1, 0.10, -0.001]
    np.testing.assert_allclose(result.returns.to_numpy(), expected, atol=1e-12)

    trades = result.trades
    assert list(trades["direction"]) == ["long", "short"]
    assert trades["exit_date"].iloc[0] == trades["entry_date"].iloc[1] == bars.index[1]
    long_return = 1.1 / 1.001 * 0.999 - 1
    short_return = 1.1 / 1.001 * 1.10 * 0.999 - 1
    np.testing.assert_allclose(trades["return"].to_numpy(), [long_return, short_return])
    assert not trades["is_open"].any()
    assert np.prod(1 + trades["return"].to_numpy()) == pytest.approx(result.equity.iloc[-1], rel=1e-12)


def test_resizing_stays_in_one_trade() -> None:
    bars = _bars([100.0, 101.0, 102.0, 103.0, 104.0])
    result = run_backtest(bars, _target(bars, [0.5, 1.0, 0.25, 0, 0]), commission_bps=0, slippage_bps=0)
    assert len(result.trades) == 1
    assert result.trades["bars"].iloc[0] == 3


def test_buy_and_hold_earns_the_price_return_from_the_first_close() -> None:
    bars = _random_bars(500)
    result = run_backtest(bars, _target(bars, np.ones(500)), commission_bps=0, slippage_bps=0)
    close = bars["close"].to_numpy()
    # bought at the close of bar 0 (the first decision), held through the last bar
    assert result.equity.iloc[-1] - 1 == pytest.approx(close[-1] / close[0] - 1, rel=1e-10)
    np.testing.assert_allclose(result.equity.to_numpy(), close / close[0], rtol=1e-10)
    np.testing.assert_allclose(result.equity.to_numpy(), result.benchmark_equity.to_numpy(), rtol=1e-10)
    assert result.positions.iloc[0] == 0.0
    assert (result.positions.iloc[1:] == 1.0).all()
    assert len(result.trades) == 1 and bool(result.trades["is_open"].iloc[0])
    assert result.trades["return"].iloc[0] == pytest.approx(close[-1] / close[0] - 1)


def test_every_fill_pays_the_rate_on_its_traded_value_out_of_equity() -> None:
    rng = np.random.default_rng(3)
    bars = _random_bars(300)
    target = _target(bars, rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], size=300))
    free = run_backtest(bars, target, commission_bps=0, slippage_bps=0)
    paid = run_backtest(bars, target, commission_bps=7, slippage_bps=3)
    rate = 10 / 10_000
    held = paid.positions.to_numpy()
    before = paid.equity.to_numpy()[:-1]  # equity at each close, before its fill
    after = before * (1 - paid.costs.to_numpy()[1:])
    traded = np.abs(held[1:] * after - held[:-1] * before)
    np.testing.assert_allclose(before - after, rate * traded, rtol=1e-12, atol=1e-18)
    # the position is then earned on what is left, never on the pre-cost equity
    np.testing.assert_allclose(1 + paid.returns, (1 - paid.costs) * (1 + free.returns), rtol=0, atol=1e-15)
    assert (free.costs == 0).all()
    assert paid.equity.iloc[-1] < free.equity.iloc[-1]


def test_a_decision_only_earns_from_the_next_bar() -> None:
    bars = _random_bars(50)
    target = np.zeros(50)
    target[20] = 1.0
    result = run_backtest(bars, _target(bars, target), commission_bps=0, slippage_bps=0)
    returns = result.returns.to_numpy()
    close = bars["close"].to_numpy()
    assert np.flatnonzero(returns).tolist() == [21]
    assert returns[21] == pytest.approx(close[21] / close[20] - 1)


def test_changing_the_future_does_not_change_past_returns() -> None:
    rng = np.random.default_rng(11)
    bars = _random_bars(400)
    target = rng.uniform(-1, 1, 400)
    base = run_backtest(bars, _target(bars, target), commission_bps=5, slippage_bps=2)
    k = 250
    new_target = target.copy()
    new_target[k:] = rng.uniform(-1, 1, 400 - k)  # decisions from bar k's close on
    new_bars = bars.copy()
    new_bars.iloc[k + 1 :, new_bars.columns.get_loc("close")] *= 1.5  # prices after bar k
    changed = run_backtest(new_bars, _target(new_bars, new_target), commission_bps=5, slippage_bps=2)
    np.testing.assert_array_equal(base.returns.to_numpy()[: k + 1], changed.returns.to_numpy()[: k + 1])
    assert not np.array_equal(base.returns.to_numpy()[k + 1 :], changed.returns.to_numpy()[k + 1 :])


def test_trading_on_the_bar_just_seen_earns_nothing_on_noise() -> None:
    # Going long after an up bar: with a look-ahead engine this would earn |r| every bar.
    bars = _random_bars(5000, seed=8)
    up = np.sign(bars["close"].pct_change().fillna(0.0).to_numpy())
    result = run_backtest(bars, _target(bars, up), commission_bps=0, slippage_bps=0)
    mean_abs_move = bars["close"].pct_change().abs().mean()
    assert abs(result.returns.mean()) < 0.1 * mean_abs_move


@pytest.mark.parametrize(
    ("values", "flips"),
    [([0.0, 0.0, 1.0, -1.0], False), ([0.0, 0.0, 1.0, -1.0, 0.5, -0.5], True)],
)
def test_product_of_trade_returns_is_the_equity(values: list[float], flips: bool) -> None:
    # with costs split exactly between a flip's two trades, flips and resizes included
    rng = np.random.default_rng(5)
    bars = _random_bars(600)
    target = rng.choice(values, size=600)
    if not flips:
        target[1:][target[1:] * target[:-1] < 0] = 0.0  # no direct long <-> short flips
    result = run_backtest(bars, _target(bars, target), commission_bps=5, slippage_bps=5)
    assert len(result.trades) > 20
    growth = np.prod(1.0 + result.trades["return"].to_numpy())
    assert growth == pytest.approx(result.equity.iloc[-1], rel=1e-10)


def test_nan_target_is_flat_and_no_trades_is_an_empty_table() -> None:
    bars = _random_bars(30)
    result = run_backtest(bars, _target(bars, np.full(30, np.nan)), commission_bps=5, slippage_bps=2)
    assert (result.positions == 0).all()
    assert (result.returns == 0).all()
    assert result.trades.empty
    assert "return" in result.trades.columns


@pytest.mark.parametrize(
    ("target_values", "costs", "match"),
    [
        ([0.0, 1.5, 0.0], (0.0, 0.0), r"\[-1, 1\]"),
        ([0.0, 1.0, 0.0], (-1.0, 0.0), "commission_bps"),
        ([0.0, 1.0, 0.0], (0.0, float("nan")), "slippage_bps"),
        ([0.0, 1.0, 0.0], (9_000.0, 1_000.0), "below 10,000"),
    ],
)
def test_bad_inputs_are_rejected(target_values: list[float], costs: tuple[float, float], match: str) -> None:
    bars = _bars([100.0, 101.0, 102.0])
    with pytest.raises(BacktestError, match=match):
        run_backtest(bars, _target(bars, target_values), commission_bps=costs[0], slippage_bps=costs[1])


def test_misaligned_target_and_bad_prices_are_rejected() -> None:
    bars = _bars([100.0, 101.0, 102.0])
    with pytest.raises(BacktestError, match="index"):
        run_backtest(bars, pd.Series([1.0, 1.0]), commission_bps=0, slippage_bps=0)
    broken = _bars([100.0, 0.0, 102.0])
    with pytest.raises(BacktestError, match="positive"):
        run_backtest(broken, _target(broken, [1, 1, 1]), commission_bps=0, slippage_bps=0)
    one = _bars([100.0])
    with pytest.raises(BacktestError, match="2 bars"):
        run_backtest(one, _target(one, [1]), commission_bps=0, slippage_bps=0)


def test_next_open_fills_at_the_next_open_by_hand() -> None:
    index = pd.date_range("2020-01-01", periods=4, freq="D", name="date")
    bars = pd.DataFrame({"open": [10.0, 11.0, 12.0, 9.0], "close": [10.0, 12.0, 10.0, 9.9]}, index=index)
    target = pd.Series([1.0, 0.0, 0.0, 0.0], index=index)
    result = run_backtest(bars, target, commission_bps=0, slippage_bps=0, fill="next_open")
    # Decided at close 0, bought at open 1 (11), sold at open 2 (12): +12/11 - 1.
    np.testing.assert_allclose(result.returns.to_numpy(), [0.0, 12 / 11 - 1, 12 / 12 - 1, 0.0])
    trade = result.trades.iloc[0]
    assert (trade["entry_date"], trade["exit_date"]) == (index[1], index[2])
    assert (trade["entry_price"], trade["exit_price"]) == (11.0, 12.0)
    assert trade["return"] == pytest.approx(12 / 11 - 1)
    closing = run_backtest(bars, target, commission_bps=0, slippage_bps=0)
    assert closing.trades.iloc[0]["entry_price"] == 10.0  # the signal bar's close


def test_next_open_trades_multiply_to_the_final_equity_with_costs_and_flips() -> None:
    rng = np.random.default_rng(5)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, 300)))
    index = pd.date_range("2020-01-01", periods=300, freq="D", name="date")
    bars = pd.DataFrame({"open": close * np.exp(rng.normal(0.0, 0.005, 300)), "close": close}, index=index)
    target = pd.Series(np.repeat(rng.choice([-1.0, 0.0, 0.5, 1.0], 30), 10), index=index)
    result = run_backtest(bars, target, commission_bps=5, slippage_bps=2, fill="next_open")
    growth = float(np.prod(1.0 + result.trades["return"].to_numpy()))
    assert growth == pytest.approx(float(result.equity.iloc[-1]), rel=1e-12)


def test_a_period_is_a_backtest_of_its_own() -> None:
    bars = _random_bars(100, seed=3)
    target = _target(bars, np.repeat([1.0, 0.0, -1.0, 1.0], 25))
    result = run_backtest(bars, target, commission_bps=5, slippage_bps=2)
    tail = period(result, 60)
    assert tail.returns.index[0] == bars.index[59] and tail.returns.iloc[0] == 0.0
    np.testing.assert_allclose(tail.returns.to_numpy()[1:], result.returns.to_numpy()[60:])
    assert float(tail.equity.iloc[-1]) == pytest.approx(float(result.equity.iloc[-1] / result.equity.iloc[59]))
    assert (tail.trades["entry_date"] >= bars.index[59]).all()
    head = period(result, 1, 60)
    assert head.trades["is_open"].iloc[-1] and head.trades["exit_date"].iloc[-1] == bars.index[59]
    with pytest.raises(BacktestError):
        period(result, 0)


# The speed of run_backtest on 5,000 bars is measured in bench/research.py (`make bench`),
# beside backtesting.py: a median under a few milliseconds is a benchmark figure, not a test.
