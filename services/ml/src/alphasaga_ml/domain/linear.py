"""A linear direction classifier beside LightGBM: logistic regression on standardised
features. Walk-forward training treats it exactly as the trees (``train.py``): each fit
sees only its training rows, and so do the means and scales it standardises and fills
missing values with. It is stored as JSON (coefficients, means, scales), never pickled."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# Daily returns are mostly noise: a fairly strong L2 penalty keeps the fit near the base rate.
C = 0.1


@dataclass(frozen=True)
class LinearModel:
    names: tuple[str, ...]
    mean: FloatArray
    scale: FloatArray
    coef: FloatArray
    intercept: float

    def predict(self, x: FloatArray) -> FloatArray:
        z = self._standardise(x)
        logit = z @ self.coef + self.intercept
        return np.asarray(1.0 / (1.0 + np.exp(-logit)), dtype=np.float64)

    def _standardise(self, x: FloatArray) -> FloatArray:
        filled = np.where(np.isnan(x), self.mean, x)
        return np.asarray((filled - self.mean) / self.scale, dtype=np.float64)

    def text(self) -> str:
        return json.dumps(
            {
                "model": "logistic_regression",
                "features": list(self.names),
                "mean": self.mean.tolist(),
                "scale": self.scale.tolist(),
                "coef": self.coef.tolist(),
                "intercept": self.intercept,
            }
        )

    def importance(self) -> dict[str, float]:
        """Each feature's share of the coefficients' absolute sum (on standardised features)."""
        weight = np.abs(self.coef)
        total = float(weight.sum())
        shares = weight / total if total > 0 else np.zeros_like(weight)
        return {name: float(share) for name, share in zip(self.names, shares, strict=True)}


def fit_linear(x: FloatArray, y: FloatArray, names: tuple[str, ...], seed: int) -> LinearModel:
    """Fit on these rows only. A column with no value here gets mean 0 and scale 1; a
    training set of one class gives zero coefficients and that class's log-odds, clipped."""
    seen = ~np.isnan(x)
    count = np.maximum(seen.sum(axis=0), 1)
    mean = np.where(seen, x, 0.0).sum(axis=0) / count
    spread = np.sqrt(np.where(seen, (x - mean) ** 2, 0.0).sum(axis=0) / count)
    scale = np.where(spread > 0, spread, 1.0)
    model = LinearModel(names, mean, scale, np.zeros(x.shape[1]), 0.0)
    if len(np.unique(y)) < 2:
        rate = float(np.clip(np.mean(y) if len(y) else 0.5, 1e-6, 1 - 1e-6))
        return LinearModel(names, mean, scale, model.coef, float(np.log(rate / (1 - rate))))
    from sklearn.linear_model import LogisticRegression  # on the first fit: see train.py

    fitted = LogisticRegression(C=C, max_iter=500, random_state=seed).fit(model._standardise(x), y)
    return LinearModel(names, mean, scale, fitted.coef_[0].astype(np.float64), float(fitted.intercept_[0]))
