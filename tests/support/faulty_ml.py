"""The real ml worker, training for real, except that it fails the linear branch of a
request whose seed is ``FAULT_SEED`` (non-retryable): a failure injected into one branch of
a research v2 saga. Run as ``python -m tests.support.faulty_ml``."""

from __future__ import annotations

from alphasaga_contracts import Service
from alphasaga_contracts import steps as st
from alphasaga_ml.service import Ml
from alphasaga_shared.eventstore import ArtifactStore
from alphasaga_shared.runner import ServiceContext
from alphasaga_shared.worker import KindHandlers, StepError, handles, run_worker

FAULT_SEED = 13


class FaultyMl(Ml):
    async def train(self, cmd: st.TrainModel) -> st.ModelTrained:
        if cmd.request.seed == FAULT_SEED and cmd.model_kind == "linear":
            raise StepError("invalid_input", f"injected failure of the linear branch (seed {FAULT_SEED})")
        return await super().train(cmd)


async def make_handlers(ctx: ServiceContext) -> list[KindHandlers]:
    ml = FaultyMl(ArtifactStore(ctx.store.pool))
    return [handles(st.ML, run=ml.train, undo=ml.undo)]


if __name__ == "__main__":
    run_worker(Service.ML, make_handlers)
