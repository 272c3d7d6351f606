"""A service that meets a problem it cannot get past: it begins a condition with the bound
STUCK_BOUND_S (as the bus does for groups it cannot make again, or a worker for an outage
it waits out), so that a test can watch its probes turn and the runner stop it. Run as
``python -m tests.support.stuck_service``."""

from __future__ import annotations

import os

from alphasaga_shared.conditions import CONDITIONS
from alphasaga_shared.runner import ServiceContext, run_service


async def setup(ctx: ServiceContext) -> None:
    CONDITIONS.begin("stuck", "waiting for something that never comes", bound_s=float(os.environ["STUCK_BOUND_S"]))


if __name__ == "__main__":
    run_service("stuck", setup)
