"""All four workers in one process, answering at once, for orchestrator tests.

SIM_CONFIG (JSON) says how to misbehave; every random choice is a hash of the message
id, so a run can be repeated:
  fail_always: [services]        non-retryable failure on every attempt
  fail_rate: float               retryable failure of that share of attempts
  silent: {service: [attempts]}  no reply to those attempts (the step times out); [0] = all
  duplicate_rate: float          that share of replies is sent twice with the same message id,
                                 and once more under a new id (a redone reply)
  compensation_fail: [services]  every compensation attempt fails
  only: [services]               serve these services alone (another process serves the rest)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from typing import Any

from alphasaga_contracts import WORKERS, Streams
from alphasaga_contracts import steps as st
from alphasaga_shared import telemetry
from alphasaga_shared.bus import Bus
from alphasaga_shared.config import Settings
from alphasaga_shared.wire import Delivery, Envelope, Outgoing, derived_message_id, envelope_for
from tests.support import replies
from tests.support.serve import serve_until_sigterm


def chance(message_id: str, salt: str) -> float:
    digest = hashlib.blake2b(f"{message_id}/{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest) / 2**64


def make_handler(service: str, streams: Streams, config: dict[str, Any]) -> Any:
    reply_stream = streams.events(service)

    async def handle(env: Envelope, delivery: Delivery) -> Sequence[Outgoing]:
        msg = env.message
        reply: st.StepMessage
        if isinstance(msg, st.StepCommand):
            silent = config.get("silent", {}).get(service, [])
            if msg.attempt in silent or 0 in silent:
                return ()
            if service in config.get("fail_always", []):
                reply = replies.failure(service, msg.saga_id, msg.step, msg.attempt, retryable=False)
            elif chance(env.message_id, "fail") < config.get("fail_rate", 0.0):
                reply = replies.failure(service, msg.saga_id, msg.step, msg.attempt, retryable=True)
            else:
                reply = replies.success(service, msg.saga_id, msg.step, msg.attempt)
        elif isinstance(msg, st.CompensateStep):
            if service in config.get("compensation_fail", []):
                reply = replies.COMPENSATION_FAILED[service](
                    saga_id=msg.saga_id, step=msg.step, attempt=msg.attempt, error="simulated: cannot undo"
                )
            else:
                reply = replies.COMPENSATED[service](saga_id=msg.saga_id, step=msg.step, attempt=msg.attempt)
        else:
            return ()
        one = envelope_for(
            reply,
            correlation_id=env.correlation_id,
            causation_id=env.message_id,
            message_id=derived_message_id(env.message_id, reply.TYPE),
            traceparent=telemetry.current_traceparent(),
        )
        out = [Outgoing(reply_stream, one)]
        if chance(env.message_id, "dup") < config.get("duplicate_rate", 0.0):
            redone = envelope_for(reply, correlation_id=env.correlation_id, causation_id=env.message_id)
            out += [Outgoing(reply_stream, one), Outgoing(reply_stream, redone)]
        return out

    return handle


async def main() -> None:
    settings = Settings()
    telemetry.setup_tracing("sim", settings.otlp_endpoint)  # as real workers do (the tracing bench)
    config = json.loads(os.environ.get("SIM_CONFIG", "{}"))
    bus = Bus(settings, service="sim")
    for service in config.get("only", WORKERS):
        bus.subscribe(
            settings.streams.commands(service),
            make_handler(service, settings.streams, config),
            group=str(service),
            dedupe=True,
        )
    await serve_until_sigterm(bus, f"sim workers ready {uuid.uuid4().hex[:4]}")
    telemetry.shutdown_tracing()


if __name__ == "__main__":
    asyncio.run(main())
