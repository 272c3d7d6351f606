"""Purged walk-forward training of a direction classifier: LightGBM, or a logistic
regression (``model="linear"``, ``linear.py``), fitted and scored the same way.

Why walk-forward and purged: a backtest gated by these probabilities is only honest if
every probability comes from a model that could have existed at that bar. So each
out-of-sample block is predicted by a model fitted on strictly earlier rows, and the
training rows whose labels would peek into the block are dropped.

Conventions
-----------
* Label of row ``t``: ``1`` if ``log(close[t + horizon] / close[t]) > 0`` else ``0``;
  unknown (NaN) for the last ``horizon`` rows and wherever a close is missing. Rows with
  unknown labels are never trained on and never scored.
* Layout over the row positions ``0 .. n-1``::

      [0, min_train)          first training window
      [min_train, +horizon)   purge gap of the first fold
      [min_train+horizon, n-horizon)   labelled out-of-sample region, cut into
                              ``n_splits`` consecutive blocks
      [n-horizon, n)          unlabelled tail: predicted by the last fold's model
                              (usable for trading), but not scored

* Expanding window with purge: the model for a block starting at row ``s`` is trained
  on labelled rows ``i <= s - horizon - 1``. The label of such a row needs
  ``close[i + horizon]`` with ``i + horizon <= s - 1``: everything it uses is known
  strictly before the first bar of the block. Features are taken as given (the caller
  computes them causally).
* No embargo: an embargo protects training rows *after* a test block from serial
  correlation with it. In an expanding walk-forward no training row ever comes after
  the block it predicts, so an embargo would only discard data.
* ``n_predictions`` counts the scored predictions (out-of-sample *and* labelled).
* Baseline: per fold, predict the training window's base rate for every test row.
* AUC is reported as 0.5 when the scored labels hold a single class (undefined).
* Feature importance: total gain per feature in the final model, normalised to sum 1
  (all zeros if the model made no split at all).
* Models are stored as LightGBM's text format (``model_to_string``), or the linear
  model's JSON, never pickled: loading a text model cannot execute code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped]

from alphasaga_contracts.research import ModelMetrics

from .linear import fit_linear

if TYPE_CHECKING:
    import lightgbm as lgb

# LightGBM and scikit-learn (and scipy under both) are imported on the first fit or load, not when
# the service starts: about two seconds of CPU that a process which trains nothing never pays.

SIGNAL_COLUMN: Final = "signal"
PROBA_COLUMN: Final = "proba"
MIN_TEST_ROWS_PER_SPLIT: Final = 20
NUM_BOOST_ROUND: Final = 100
_PROBA_CLIP: Final = 1e-15
_FORBIDDEN_NAME_CHARS: Final = frozenset('[]{}":,') | frozenset(" \t\n\r")

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


class TrainingError(ValueError):
    """The inputs cannot produce an honest walk-forward model."""


class ModelLoadError(ValueError):
    """The text is not a LightGBM model."""


@dataclass(frozen=True)
class Fold:
    """One out-of-sample block and the purged training set behind it (0-based rows)."""

    train_first: int
    train_last: int
    n_train: int
    test_first: int
    test_last: int
    n_scored: int
    base_rate: float


@dataclass(frozen=True)
class TrainingResult:
    """Metrics, the final model as LightGBM text, and the out-of-sample probabilities.

    ``predictions`` has the bars' index and one column ``proba`` (probability that the
    forward return is positive), NaN where no out-of-sample prediction exists.
    """

    metrics: ModelMetrics
    model_text: str
    predictions: pd.DataFrame
    folds: tuple[Fold, ...]
    feature_names: tuple[str, ...]


def lgb_params(seed: int) -> dict[str, Any]:
    """Small, regularised, single-threaded and deterministic: same seed, same model.

    Daily returns are mostly noise, so the trees are shallow and leaves need many rows:
    on S&P 500 data a 15-leaf model overfitted (out-of-sample log loss 0.80 against the
    base rate's 0.69); this one stays closer to calibrated (0.73).
    """
    return {
        "objective": "binary",
        "learning_rate": 0.03,
        "num_leaves": 7,
        "min_data_in_leaf": 100,
        "lambda_l2": 1.0,
        "feature_fraction": 1.0,
        "bagging_fraction": 1.0,
        "bagging_freq": 0,
        "seed": seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": 1,
        "verbosity": -1,
    }


def required_rows(*, horizon: int, n_splits: int, min_train: int) -> int:
    """Fewest bars that leave ``MIN_TEST_ROWS_PER_SPLIT`` scored rows in every block."""
    return min_train + 2 * horizon + n_splits * MIN_TEST_ROWS_PER_SPLIT


def make_labels(close: FloatArray, horizon: int) -> FloatArray:
    """1.0 / 0.0 for a positive / non-positive forward log return, NaN if unknown."""
    n = len(close)
    labels = np.full(n, np.nan)
    if n > horizon:
        with np.errstate(divide="ignore", invalid="ignore"):
            forward = np.log(close[horizon:]) - np.log(close[:-horizon])
        labels[: n - horizon] = np.where(np.isfinite(forward), (forward > 0).astype(float), np.nan)
    return labels


def train_walk_forward(
    bars: pd.DataFrame,
    signals: pd.DataFrame,
    *,
    horizon: int,
    seed: int,
    n_splits: int = 5,
    min_train: int = 250,
    include_signal: bool = True,
    each_fold: Callable[[int], AbstractContextManager[object]] = lambda _: nullcontext(),
    model: str = "lightgbm",
) -> TrainingResult:
    """Train with purged expanding-window walk-forward validation, then on all labels.
    ``each_fold`` wraps the work of each fold (the service traces it).

    Raises ``TrainingError`` before any fitting if there are too few rows.
    """
    _check_arguments(horizon=horizon, n_splits=n_splits, min_train=min_train)
    if model not in MODELS:
        raise TrainingError(f"unknown model {model!r} (known: {', '.join(MODELS)})")
    n = len(bars)
    needed = required_rows(horizon=horizon, n_splits=n_splits, min_train=min_train)
    if n < needed:
        raise TrainingError(
            f"too few rows to train: got {n} bars, need at least {needed} "
            f"(min_train {min_train} + 2 x horizon {horizon} for the purge gap and the "
            f"unlabelled tail + {n_splits} splits x {MIN_TEST_ROWS_PER_SPLIT} test rows)"
        )
    names, x = _feature_matrix(bars, signals, include_signal=include_signal)
    y = make_labels(_close(bars), horizon)
    labelled = ~np.isnan(y)
    blocks = _test_blocks(n, horizon=horizon, n_splits=n_splits, min_train=min_train)
    proba, baseline, folds = _walk_forward(
        x, y, names, blocks, horizon=horizon, seed=seed, each_fold=each_fold, model=model
    )
    scored = labelled & ~np.isnan(proba)
    if not scored.any():
        raise TrainingError("no labelled out-of-sample rows to score (are the closes missing?)")
    final = _fit(x[labelled], y[labelled], names, seed, model)
    metrics = _metrics(
        y[scored],
        proba[scored],
        baseline[scored],
        n_splits=len(folds),
        importance=final.importance(),
    )
    predictions = pd.DataFrame({PROBA_COLUMN: proba}, index=bars.index)
    return TrainingResult(
        metrics=metrics,
        model_text=final.text(),
        predictions=predictions,
        folds=tuple(folds),
        feature_names=names,
    )


def _walk_forward(
    x: FloatArray,
    y: FloatArray,
    names: tuple[str, ...],
    blocks: Iterable[tuple[int, int]],
    *,
    horizon: int,
    seed: int,
    each_fold: Callable[[int], AbstractContextManager[object]],
    model: str,
) -> tuple[FloatArray, FloatArray, list[Fold]]:
    """Each test block predicted by a model fitted on the labelled rows before its purge
    gap: the out-of-sample probabilities, the base rate each block was up against, and
    the folds."""
    labelled = ~np.isnan(y)
    proba = np.full(len(y), np.nan)
    baseline = np.full(len(y), np.nan)
    folds: list[Fold] = []
    for number, (first, last) in enumerate(blocks):
        cutoff = first - horizon  # train on rows < cutoff: their labels end before `first`
        train_idx: IntArray = np.flatnonzero(labelled[:cutoff])
        if train_idx.size == 0:
            raise TrainingError(f"no labelled training rows before row {first}")
        with each_fold(number):
            fitted = _fit(x[train_idx], y[train_idx], names, seed, model)
            proba[first : last + 1] = fitted.predict(x[first : last + 1])
        base_rate = float(y[train_idx].mean())
        baseline[first : last + 1] = base_rate
        folds.append(
            Fold(
                train_first=int(train_idx[0]),
                train_last=int(train_idx[-1]),
                n_train=int(train_idx.size),
                test_first=first,
                test_last=last,
                n_scored=int(labelled[first : last + 1].sum()),
                base_rate=base_rate,
            )
        )
    return proba, baseline, folds


def load_model(text: str) -> lgb.Booster:
    """Rebuild a booster from LightGBM's text format (the only format we store)."""
    if not text.strip():
        raise ModelLoadError("empty model text")
    import lightgbm as lgb
    from lightgbm.basic import LightGBMError

    try:
        return lgb.Booster(model_str=text)
    except LightGBMError as exc:
        raise ModelLoadError(f"not a LightGBM text model: {exc}") from exc


def _check_arguments(*, horizon: int, n_splits: int, min_train: int) -> None:
    for name, value in (("horizon", horizon), ("n_splits", n_splits), ("min_train", min_train)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TrainingError(f"{name} must be a positive integer, got {value!r}")


def _close(bars: pd.DataFrame) -> FloatArray:
    if "close" not in bars.columns:
        raise TrainingError("bars need a 'close' column")
    close: FloatArray = bars["close"].to_numpy(dtype=np.float64)
    return close


def _feature_matrix(
    bars: pd.DataFrame, signals: pd.DataFrame, *, include_signal: bool
) -> tuple[tuple[str, ...], FloatArray]:
    """The feature columns of ``signals`` (plus ``signal`` if asked) as a float matrix."""
    if not signals.index.equals(bars.index):
        raise TrainingError(f"signals must share the bars' index ({len(signals)} signal rows vs {len(bars)} bars)")
    columns = [c for c in signals.columns if c != SIGNAL_COLUMN]
    if include_signal and SIGNAL_COLUMN in signals.columns:
        columns.append(SIGNAL_COLUMN)
    if not columns:
        raise TrainingError("signals hold no feature column to train on")
    names = tuple(str(c) for c in columns)
    if len(set(names)) != len(names):
        raise TrainingError(f"duplicate feature names: {sorted(names)}")
    bad = [name for name in names if not name or _FORBIDDEN_NAME_CHARS.intersection(name)]
    if bad:
        raise TrainingError(f"feature names LightGBM cannot store: {bad}")
    try:
        x: FloatArray = signals[columns].to_numpy(dtype=np.float64, copy=True)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"feature columns must be numeric: {exc}") from exc
    x[~np.isfinite(x)] = np.nan  # LightGBM treats NaN as missing; inf would be a value
    return names, x


def _test_blocks(n: int, *, horizon: int, n_splits: int, min_train: int) -> list[tuple[int, int]]:
    """Consecutive (first, last) row blocks; the last one also covers the unlabelled tail."""
    region = np.arange(min_train + horizon, n - horizon)
    blocks = [(int(part[0]), int(part[-1])) for part in np.array_split(region, n_splits)]
    first, _ = blocks[-1]
    blocks[-1] = (first, n - 1)
    return blocks


class Fitted(Protocol):
    """A model fitted on one training set."""

    def predict(self, x: FloatArray) -> FloatArray: ...

    def text(self) -> str: ...

    def importance(self) -> dict[str, float]: ...


@dataclass(frozen=True)
class _Trees:
    booster: lgb.Booster
    names: tuple[str, ...]

    def predict(self, x: FloatArray) -> FloatArray:
        return np.asarray(self.booster.predict(x), dtype=np.float64)

    def text(self) -> str:
        text: str = self.booster.model_to_string()
        return text

    def importance(self) -> dict[str, float]:
        return _importance(self.booster, self.names)


def _fit_trees(x: FloatArray, y: FloatArray, names: tuple[str, ...], seed: int) -> Fitted:
    import lightgbm as lgb

    data = lgb.Dataset(x, label=y, feature_name=list(names), params={"verbosity": -1})
    return _Trees(lgb.train(lgb_params(seed), data, num_boost_round=NUM_BOOST_ROUND), names)


MODELS: Final[dict[str, Callable[[FloatArray, FloatArray, tuple[str, ...], int], Fitted]]] = {
    "lightgbm": _fit_trees,
    "linear": fit_linear,
}


def _fit(x: FloatArray, y: FloatArray, names: tuple[str, ...], seed: int, model: str) -> Fitted:
    return MODELS[model](x, y, names, seed)


def _log_loss(y: FloatArray, p: FloatArray) -> float:
    p = np.clip(p, _PROBA_CLIP, 1.0 - _PROBA_CLIP)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p)))


def _metrics(
    y: FloatArray,
    proba: FloatArray,
    baseline: FloatArray,
    *,
    n_splits: int,
    importance: dict[str, float],
) -> ModelMetrics:
    from sklearn.metrics import roc_auc_score  # on the first fit, as LightGBM

    positives = float(y.sum())
    auc = float(roc_auc_score(y, proba)) if 0.0 < positives < len(y) else 0.5
    return ModelMetrics(
        auc=auc,
        accuracy=float(np.mean((proba > 0.5) == (y == 1.0))),
        log_loss=_log_loss(y, proba),
        baseline_accuracy=float(np.mean((baseline > 0.5) == (y == 1.0))),
        baseline_log_loss=_log_loss(y, baseline),
        n_splits=n_splits,
        n_predictions=len(y),
        feature_importance=importance,
    )


def _importance(booster: lgb.Booster, names: tuple[str, ...]) -> dict[str, float]:
    gain = np.asarray(booster.feature_importance(importance_type="gain"), dtype=np.float64)
    total = float(gain.sum())
    shares = gain / total if total > 0 else np.zeros_like(gain)
    return {name: float(share) for name, share in zip(names, shares, strict=True)}
