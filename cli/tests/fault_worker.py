"""The workers in one process (tests.support.sim_workers' valid replies), with a
fault: FAULT_SERVICES (comma-separated) raise on every command, like a bug that the bus
retries and then dead-letters. Restarted without it, the fault is "fixed"."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from alphasaga_contracts import KINDS
from alphasaga_shared.bus import Bus, Handler
from alphasaga_shared.config import Settings
from alphasaga_shared.wire import Delivery, Envelope, Outgoing
from tests.support.serve import serve_until_sigterm
from tests.support.sim_workers import make_handler


def failing(service: str) -> Handler:
    async def handle(env: Envelope, delivery: Delivery) -> Sequence[Outgoing]:
        print(f"{service} got {env.type} delivery {delivery.delivery_count}", flush=True)
        raise RuntimeError(f"simulated fault in {service}: the model store is read-only")

    return handle


async def main() -> None:
    settings = Settings()
    faulty = {s for s in os.environ.get("FAULT_SERVICES", "").split(",") if s}
    bus = Bus(settings, service="fault-workers")
    for service in KINDS.services():
        handler: Handler = failing(service) if service in faulty else make_handler(service, settings.streams, {})
        for queue in KINDS.queues(service):
            bus.subscribe(settings.streams.commands(queue), handler, group=str(service), dedupe=True, max_records=1)
    await serve_until_sigterm(bus, f"fault workers ready (faulty: {sorted(faulty)})")


if __name__ == "__main__":
    asyncio.run(main())
