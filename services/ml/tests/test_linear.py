"""The linear model kind: walk-forward as the trees are, no future data in any prediction,
an informative feature found, noise left at a coin flip, stored as JSON."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from alphasaga_ml.domain.linear import fit_linear
from alphasaga_ml.domain.train import TrainingError, TrainingResult, train_walk_forward

HORIZON = 5


def bars_of(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    index = pd.date_range("2001-01-02", periods=n, freq="B", name="date")
    return pd.DataFrame({"open": close, "high": close, "low": close, "close": close}, index=index)


def noise_signals(bars: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(bars)
    data = {"noise_a": rng.normal(size=n), "noise_b": rng.normal(size=n), "signal": np.sign(rng.normal(size=n))}
    return pd.DataFrame(data, index=bars.index)


def forward_log_return(bars: pd.DataFrame, horizon: int) -> np.ndarray:
    close = bars["close"].to_numpy()
    forward = np.full(len(close), np.nan)
    forward[:-horizon] = np.log(close[horizon:] / close[:-horizon])
    return forward


def train(bars: pd.DataFrame, signals: pd.DataFrame, model: str = "lightgbm") -> TrainingResult:
    return train_walk_forward(bars, signals, horizon=HORIZON, seed=7, n_splits=5, min_train=250, model=model)


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return bars_of(1200)


def test_predictions_do_not_change_when_the_future_changes(bars: pd.DataFrame) -> None:
    signals = noise_signals(bars)
    base = train(bars, signals, model="linear")
    cut = base.folds[2].test_first + 37
    rng = np.random.default_rng(99)
    future_bars, future_signals = bars.copy(), signals.copy()
    future_bars.iloc[cut:, future_bars.columns.get_loc("close")] *= np.exp(
        np.cumsum(rng.normal(0.002, 0.05, len(bars) - cut))
    )
    future_signals.iloc[cut:, 0] = rng.normal(size=len(bars) - cut) * 10.0
    changed = train(future_bars, future_signals, model="linear")
    before = base.predictions["proba"].to_numpy()[:cut]
    np.testing.assert_array_equal(before, changed.predictions["proba"].to_numpy()[:cut])
    after = base.predictions["proba"].to_numpy()[cut:]
    assert not np.array_equal(after, changed.predictions["proba"].to_numpy()[cut:]), "the test can see a leak"


def test_it_finds_an_informative_feature_and_not_noise(bars: pd.DataFrame) -> None:
    noise = train(bars, noise_signals(bars), model="linear")
    assert abs(noise.metrics.auc - 0.5) < 0.08
    rng = np.random.default_rng(5)
    signals = noise_signals(bars)
    signals.insert(0, "oracle", forward_log_return(bars, HORIZON) + rng.normal(0.0, 0.02, len(bars)))
    informed = train(bars, signals, model="linear")
    assert informed.metrics.auc > 0.65
    importance = informed.metrics.feature_importance
    assert max(importance, key=lambda name: importance[name]) == "oracle"
    assert sum(importance.values()) == pytest.approx(1.0)


def test_the_model_is_json_and_differs_from_the_trees(bars: pd.DataFrame) -> None:
    signals = noise_signals(bars)
    linear, trees = train(bars, signals, model="linear"), train(bars, signals)
    stored = json.loads(linear.model_text)
    assert stored["model"] == "logistic_regression" and stored["features"] == list(linear.feature_names)
    assert not np.allclose(linear.predictions["proba"].dropna(), trees.predictions["proba"].dropna())


def test_one_class_and_missing_values_fit_without_error() -> None:
    x = np.array([[1.0, np.nan], [2.0, np.nan], [3.0, np.nan]])
    model = fit_linear(x, np.array([1.0, 1.0, 1.0]), ("a", "b"), 7)
    proba = model.predict(x)
    assert np.all(proba > 0.99) and np.all(np.isfinite(proba))


def test_an_unknown_model_is_refused(bars: pd.DataFrame) -> None:
    with pytest.raises(TrainingError, match="unknown model 'forest'"):
        train(bars, noise_signals(bars), model="forest")
