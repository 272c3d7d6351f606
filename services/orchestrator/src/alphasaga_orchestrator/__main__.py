"""``python -m alphasaga_orchestrator``: the saga orchestrator, with the outbox relay and
the saga-list projector (each can run in a process of its own instead)."""

from __future__ import annotations

from alphasaga_shared.runner import ServiceContext, run_service

from . import bootstrap


async def setup(ctx: ServiceContext) -> None:
    (await bootstrap.service(ctx)).attach(ctx)


def main() -> None:
    run_service("orchestrator", setup)


if __name__ == "__main__":
    main()
