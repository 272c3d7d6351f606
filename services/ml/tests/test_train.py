"""Purged walk-forward training: determinism, no future data, honest metrics."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from alphasaga_ml.domain.train import (
    MIN_TEST_ROWS_PER_SPLIT,
    ModelLoadError,
    TrainingError,
    TrainingResult,
    load_model,
    make_labels,
    required_rows,
    train_walk_forward,
)

HORIZON = 5
N_BARS = 1200
MIN_TRAIN = 250


def _bars(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    index = pd.date_range("2001-01-02", periods=n, freq="B", name="date")
    return pd.DataFrame(
        {
            "open": close,
            "high": close * 1.01,
            "low": close * 0.99,
            "close": close,
            "volume": 1e6,
        },
        index=index,
    )


def _noise_signals(bars: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(bars)
    return pd.DataFrame(
        {
            "noise_a": rng.normal(size=n),
            "noise_b": rng.normal(size=n),
            "signal": np.sign(rng.normal(size=n)),
        },
        index=bars.index,
    )


def _forward_log_return(bars: pd.DataFrame, horizon: int) -> np.ndarray:
    close = bars["close"].to_numpy()
    forward = np.full(len(close), np.nan)
    forward[:-horizon] = np.log(close[horizon:] / close[:-horizon])
    return forward


def _train(bars: pd.DataFrame, signals: pd.DataFrame, **kwargs: Any) -> TrainingResult:
    params: dict[str, Any] = {"horizon": HORIZON, "seed": 7, "n_splits": 5, "min_train": MIN_TRAIN}
    params.update(kwargs)
    return train_walk_forward(bars, signals, **params)


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return _bars(N_BARS)


@pytest.fixture(scope="module")
def noise_result(bars: pd.DataFrame) -> TrainingResult:
    return _train(bars, _noise_signals(bars))


def test_labels_are_the_sign_of_the_forward_log_return() -> None:
    close = np.array([10.0, 11.0, 11.0, 9.0, 12.0, 12.0])
    labels = make_labels(close, 2)
    # t=0: 11/10 > 1 -> 1; t=1: 9/11 < 1 -> 0; t=2: 12/11 -> 1; t=3: 12/9 -> 1; tail unknown
    np.testing.assert_array_equal(labels, [1.0, 0.0, 1.0, 1.0, np.nan, np.nan])
    assert make_labels(np.array([5.0, 5.0, 6.0]), 1)[0] == 0.0  # flat counts as "not up"


def test_two_runs_are_identical(bars: pd.DataFrame, noise_result: TrainingResult) -> None:
    again = _train(bars, _noise_signals(bars))
    np.testing.assert_array_equal(noise_result.predictions["proba"].to_numpy(), again.predictions["proba"].to_numpy())
    assert noise_result.model_text == again.model_text
    assert noise_result.metrics == again.metrics


def test_every_training_row_ends_before_its_test_block(noise_result: TrainingResult) -> None:
    folds = noise_result.folds
    assert len(folds) == 5
    for fold in folds:
        # the label of the last training row uses close[train_last + horizon] < test_first
        assert fold.train_last < fold.test_first - HORIZON
        assert fold.train_last + HORIZON < fold.test_first
    assert folds[0].n_train == MIN_TRAIN
    # blocks are consecutive, cover the data up to the last bar, and the window expands
    for earlier, later in itertools.pairwise(folds):
        assert later.test_first == earlier.test_last + 1
        assert later.n_train > earlier.n_train
    assert folds[-1].test_last == N_BARS - 1


def test_predictions_do_not_change_when_the_future_changes(bars: pd.DataFrame) -> None:
    signals = _noise_signals(bars)
    base = _train(bars, signals)
    cut = base.folds[2].test_first + 37  # inside the third out-of-sample block

    rng = np.random.default_rng(99)
    future_bars = bars.copy()
    future_bars.iloc[cut:, future_bars.columns.get_loc("close")] *= np.exp(
        np.cumsum(rng.normal(0.002, 0.05, len(bars) - cut))
    )
    future_signals = signals.copy()
    future_signals.iloc[cut:, 0] = rng.normal(size=len(bars) - cut) * 10.0
    changed = _train(future_bars, future_signals)

    before = base.predictions["proba"].to_numpy()[:cut]
    np.testing.assert_array_equal(before, changed.predictions["proba"].to_numpy()[:cut])
    # and the change does reach later predictions, so the test can see a leak
    after = base.predictions["proba"].to_numpy()[cut:]
    assert not np.array_equal(after, changed.predictions["proba"].to_numpy()[cut:])


def test_no_prediction_before_the_first_test_block(noise_result: TrainingResult) -> None:
    proba = noise_result.predictions["proba"]
    first = noise_result.folds[0].test_first
    assert proba.iloc[:first].isna().all()
    assert proba.iloc[first:].notna().all()  # including the unlabelled tail
    assert list(noise_result.predictions.columns) == ["proba"]
    assert noise_result.predictions.index.equals(_bars(N_BARS).index)


def test_too_few_rows_fails_fast_and_says_why() -> None:
    needed = required_rows(horizon=HORIZON, n_splits=5, min_train=MIN_TRAIN)
    assert needed == MIN_TRAIN + 2 * HORIZON + 5 * MIN_TEST_ROWS_PER_SPLIT
    short = _bars(needed - 1)
    # It fails before any training: how fast is measured in bench/research.py (`make bench`).
    with pytest.raises(TrainingError) as info:
        _train(short, _noise_signals(short))
    message = str(info.value)
    assert f"got {needed - 1} bars" in message
    assert f"need at least {needed}" in message
    assert isinstance(info.value, ValueError)
    # exactly enough rows trains
    enough = _bars(needed)
    result = _train(enough, _noise_signals(enough))
    assert all(fold.n_scored >= MIN_TEST_ROWS_PER_SPLIT for fold in result.folds)


def test_metrics_are_in_range(noise_result: TrainingResult) -> None:
    m = noise_result.metrics
    for value in (m.auc, m.accuracy, m.baseline_accuracy):
        assert 0.0 <= value <= 1.0
    assert m.log_loss > 0.0 and math.isfinite(m.log_loss)
    assert m.baseline_log_loss > 0.0 and math.isfinite(m.baseline_log_loss)
    assert m.n_splits == 5
    scored = sum(fold.n_scored for fold in noise_result.folds)
    assert m.n_predictions == scored == N_BARS - MIN_TRAIN - 2 * HORIZON
    assert set(m.feature_importance) == {"noise_a", "noise_b", "signal"}
    assert all(share >= 0.0 for share in m.feature_importance.values())
    assert sum(m.feature_importance.values()) == pytest.approx(1.0)


def test_auc_is_a_coin_flip_on_noise(noise_result: TrainingResult) -> None:
    assert abs(noise_result.metrics.auc - 0.5) < 0.08


def test_auc_is_high_on_an_informative_feature(bars: pd.DataFrame) -> None:
    rng = np.random.default_rng(5)
    signals = _noise_signals(bars)
    # synthetic oracle: the future return itself plus noise (not causal, on purpose)
    forward = _forward_log_return(bars, HORIZON)
    signals.insert(0, "oracle", forward + rng.normal(0.0, 0.02, len(bars)))
    result = _train(bars, signals)
    assert result.metrics.auc > 0.65
    assert result.metrics.accuracy > result.metrics.baseline_accuracy
    assert result.metrics.log_loss < result.metrics.baseline_log_loss
    importance = result.metrics.feature_importance
    assert max(importance, key=lambda name: importance[name]) == "oracle"


def test_signal_can_be_left_out(bars: pd.DataFrame) -> None:
    result = _train(bars, _noise_signals(bars), n_splits=2, include_signal=False)
    assert result.feature_names == ("noise_a", "noise_b")
    assert set(result.metrics.feature_importance) == {"noise_a", "noise_b"}


def test_model_text_round_trips(bars: pd.DataFrame, noise_result: TrainingResult) -> None:
    booster = load_model(noise_result.model_text)
    assert booster.feature_name() == list(noise_result.feature_names)
    x = _noise_signals(bars)[list(noise_result.feature_names)].to_numpy()
    again = load_model(booster.model_to_string())
    np.testing.assert_array_equal(booster.predict(x), again.predict(x))
    assert not noise_result.model_text.startswith("\x80")  # text, not a pickle


@pytest.mark.parametrize("text", ["", "   ", "definitely not a model"])
def test_garbage_model_text_is_rejected(text: str) -> None:
    with pytest.raises(ModelLoadError):
        load_model(text)


def test_misaligned_signals_are_rejected(bars: pd.DataFrame) -> None:
    signals = _noise_signals(bars).iloc[1:]
    with pytest.raises(TrainingError, match="index"):
        _train(bars, signals)


def test_bad_arguments_are_rejected(bars: pd.DataFrame) -> None:
    with pytest.raises(TrainingError, match="horizon"):
        _train(bars, _noise_signals(bars), horizon=0)
    only_signal = _noise_signals(bars)[["signal"]]
    with pytest.raises(TrainingError, match="no feature"):
        _train(bars, only_signal, include_signal=False)
    text_feature = _noise_signals(bars).assign(noise_a="x")
    with pytest.raises(TrainingError, match="numeric"):
        _train(bars, text_feature)


def test_missing_feature_values_are_allowed(bars: pd.DataFrame) -> None:
    signals = _noise_signals(bars)
    signals.iloc[:60, 0] = np.nan  # indicator warm-up
    signals.iloc[100, 1] = np.inf
    result = _train(bars, signals, n_splits=2)
    assert result.predictions["proba"].dropna().between(0.0, 1.0).all()
