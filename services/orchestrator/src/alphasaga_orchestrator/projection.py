"""``python -m alphasaga_orchestrator.projection``: the saga-list projector
(``alphasaga_readmodel.projector``) as a process of its own, with
``ALPHASAGA_RUN_PROJECTOR=false`` on the orchestrators (it then takes no CPU from them)."""

from __future__ import annotations

from alphasaga_readmodel.projector import SagaProjector
from alphasaga_readmodel.store import ReadStore
from alphasaga_shared.config import Settings
from alphasaga_shared.runner import ServiceContext, run_service


def projector(ctx: ServiceContext, settings: Settings) -> SagaProjector:
    return SagaProjector(
        ReadStore(ctx.store),
        batch=settings.projection_batch,
        poll_ms=settings.projection_poll_ms,
        cache_size=settings.projection_cache_size,
    )


def main() -> None:
    async def setup(ctx: ServiceContext) -> None:
        ctx.background.append(projector(ctx, ctx.settings).run)

    run_service("projector", setup)


if __name__ == "__main__":
    main()
