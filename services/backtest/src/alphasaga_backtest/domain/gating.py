"""Gate a rule-based signal with the model's out-of-sample probability.

Why: the model is a second opinion. A position is kept only when the model, trained on
the past alone, agrees with its direction; otherwise the strategy stays flat. Gating
never flips or enlarges a position, so it can only lower exposure.

Rule, for ``threshold`` ``t`` in ``[0.5, 1)``:

* long (``signal > 0``) is kept where ``proba > t``;
* short (``signal < 0``) is kept where ``proba < 1 - t``;
* everything else is 0, including bars with no prediction (``proba`` NaN or missing
  from its index — e.g. the first training window) and a NaN signal.

The kept value is the signal itself, so partial sizes pass through unchanged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd  # type: ignore[import-untyped]


def gate_signal(signal: pd.Series, proba: pd.Series, *, threshold: float = 0.5) -> pd.Series:
    """The signal where the probability agrees with its side, else 0 (same index)."""
    if not 0.5 <= threshold < 1.0:
        raise ValueError(f"threshold must lie in [0.5, 1), got {threshold!r}")
    position = signal.to_numpy(dtype=np.float64)
    p = proba.reindex(signal.index).to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):  # NaN comparisons are False, as intended
        agree = ((position > 0) & (p > threshold)) | ((position < 0) & (p < 1.0 - threshold))
    gated = np.where(agree, position, 0.0)
    return pd.Series(gated, index=signal.index, name=signal.name)
