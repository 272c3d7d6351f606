"""The ml service's handlers: fetch the bars and the strategy's features, train with
purged walk-forward validation (``domain``), store the model and the out-of-sample
predictions as artifacts."""

from __future__ import annotations

import asyncio
import io
import time

import pandas as pd  # type: ignore[import-untyped]

from alphasaga_contracts import steps as st
from alphasaga_shared import metrics, telemetry
from alphasaga_shared.eventstore import ArtifactStore
from alphasaga_shared.runner import ServiceContext
from alphasaga_shared.worker import KindHandlers, StepError, handles

from .domain import TrainingError, train_walk_forward


def read_frame(content: bytes) -> pd.DataFrame:
    """A dated CSV artifact, written with 17 significant digits: pandas reads them back exactly."""
    return pd.read_csv(io.BytesIO(content), index_col="date", parse_dates=["date"])


def write_frame(frame: pd.DataFrame) -> bytes:
    text: str = frame.to_csv(index_label="date", float_format="%.17g")
    return text.encode()


# LightGBM's text format, or the linear model's JSON.
MODEL_FILES = {"lightgbm": "model.txt", "linear": "model.json"}
MEDIA = {"lightgbm": "text/plain", "linear": "application/json"}


class Ml:
    def __init__(self, artifacts: ArtifactStore) -> None:
        self.artifacts = artifacts

    async def train(self, cmd: st.TrainModel) -> st.ModelTrained:
        bars = read_frame(await self.artifacts.get(cmd.dataset.sha256))
        signals = read_frame(await self.artifacts.get(cmd.signals.sha256))
        started = time.perf_counter()
        try:
            with telemetry.span("train walk-forward"):
                result = await asyncio.to_thread(
                    train_walk_forward,
                    bars,
                    signals,
                    horizon=cmd.hypothesis.label_horizon,
                    seed=cmd.request.seed,
                    model=cmd.model_kind,
                    each_fold=lambda number: telemetry.span("fold", {"alphasaga.fold": number}),
                )
                metrics.ML_TRAINING_SECONDS.observe(time.perf_counter() - started, metrics.exemplar())
        except TrainingError as exc:
            raise StepError("invalid_input", str(exc)) from None
        model = await self.artifacts.put(
            cmd.saga_id,
            cmd.step,
            MODEL_FILES[cmd.model_kind],
            "model",
            result.model_text.encode(),
            MEDIA[cmd.model_kind],
        )
        predictions = await self.artifacts.put(
            cmd.saga_id, cmd.step, "predictions.csv", "predictions", write_frame(result.predictions), "text/csv"
        )
        return st.ModelTrained(
            saga_id=cmd.saga_id,
            step=cmd.step,
            attempt=cmd.attempt,
            model=model,
            predictions=predictions,
            model_metrics=result.metrics,
        )

    async def undo(self, cmd: st.CompensateStep) -> None:
        await self.artifacts.remove_step(cmd.saga_id, cmd.step)


async def make_handlers(ctx: ServiceContext) -> list[KindHandlers]:
    ml = Ml(ArtifactStore(ctx.store.pool))
    return [handles(st.ML, run=ml.train, undo=ml.undo)]
