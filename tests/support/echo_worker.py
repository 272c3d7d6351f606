"""A consumer process for bus crash tests: answers each CancelSaga with one reply.

ECHO_STREAM / ECHO_REPLY_STREAM: where to read and write; ECHO_DELAY: seconds of "work"
per message; ECHO_HANG_ON: a reason whose handler finishes its work, prints FINISHED and
then hangs before its batch is committed (the test kills -9 it there); ECHO_BATCH: batch size.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence

from alphasaga_contracts import saga as sg
from alphasaga_shared.bus import open_bus
from alphasaga_shared.config import Settings
from alphasaga_shared.wire import Delivery, Envelope, Outgoing, derived_message_id, envelope_for


async def main() -> None:
    settings = Settings()
    stream, reply_stream = os.environ["ECHO_STREAM"], os.environ["ECHO_REPLY_STREAM"]
    delay = float(os.environ.get("ECHO_DELAY", "0"))
    hang_on = os.environ.get("ECHO_HANG_ON", "")

    async def handle(env: Envelope, delivery: Delivery) -> Sequence[Outgoing]:
        msg = env.message
        assert isinstance(msg, sg.CancelSaga)
        await asyncio.sleep(delay)
        reply = sg.SagaRolledBack(saga_id=msg.saga_id, reason=f"echo {msg.reason} by {settings.consumer}")
        print(f"handled {msg.reason} delivery {delivery.delivery_count}", flush=True)
        if msg.reason == hang_on:
            print("FINISHED", flush=True)
            await asyncio.sleep(3600)
        return [
            Outgoing(
                reply_stream,
                envelope_for(
                    reply,
                    correlation_id=env.correlation_id,
                    causation_id=env.message_id,
                    message_id=derived_message_id(env.message_id, "echo"),
                ),
            )
        ]

    bus = open_bus(settings, service="echo")
    bus.subscribe(stream, handle, dedupe=True, max_records=int(os.environ.get("ECHO_BATCH", "5")))
    await bus.start()
    print(f"ready {settings.consumer}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await bus.stop()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
