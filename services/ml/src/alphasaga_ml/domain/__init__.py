"""Pure ML domain logic: purged walk-forward training of a LightGBM classifier.

No broker, no database: plain functions on pandas objects, so the message handlers
stay thin and the statistics can be tested directly.
"""

from alphasaga_ml.domain.train import (
    Fold,
    ModelLoadError,
    TrainingError,
    TrainingResult,
    load_model,
    make_labels,
    required_rows,
    train_walk_forward,
)

__all__ = [
    "Fold",
    "ModelLoadError",
    "TrainingError",
    "TrainingResult",
    "load_model",
    "make_labels",
    "required_rows",
    "train_walk_forward",
]
