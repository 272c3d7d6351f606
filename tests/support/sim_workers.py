"""Every worker service, each serving every kind it hosts (``KINDS``), in one process,
answering at once, for orchestrator tests.

SIM_CONFIG (JSON) says how to misbehave; every random choice is a hash of the message
id, so a run can be repeated. A name is a service's (all its kinds), a kind's, or a step's
(a branch's too: ``ml[linear]``):
  fail_always: [names]           non-retryable failure on every attempt
  delay_s: {name: seconds}       wait that long before answering a command of it; or
  delay_s: float                 work this long on every message (so that sagas are in flight)
  fail_rate: float               retryable failure of that share of attempts
  silent: {name: [attempts]}     no reply to those attempts (the step times out); [0] = all
  duplicate_rate: float          that share of replies is sent twice with the same message id,
                                 and once more under a new id (a redone reply)
  compensation_fail: [names]     every compensation attempt fails
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

from alphasaga_contracts import KINDS, Streams
from alphasaga_contracts import steps as st
from alphasaga_shared import telemetry
from alphasaga_shared.bus import open_bus
from alphasaga_shared.config import Settings
from alphasaga_shared.wire import Delivery, Envelope, Outgoing, derived_message_id, envelope_for
from tests.support import replies
from tests.support.serve import serve_until_sigterm


def chance(message_id: str, salt: str) -> float:
    digest = hashlib.blake2b(f"{message_id}/{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest) / 2**64


def make_handler(service: str, streams: Streams, config: dict[str, Any]) -> Any:
    reply_stream = streams.events(service)

    def named(kind: str, setting: str, step: str = "") -> bool:
        return bool({service, kind, step} & set(config.get(setting, [])))

    async def handle(env: Envelope, delivery: Delivery) -> Sequence[Outgoing]:
        msg = env.message
        reply: st.StepMessage
        delays = config.get("delay_s", 0.0)
        if isinstance(delays, int | float):
            await asyncio.sleep(delays)
        if isinstance(msg, st.StepCommand) and (kind := KINDS.of_command(type(msg))) is not None:
            if isinstance(delays, dict):
                await asyncio.sleep(max(float(delays.get(n, 0.0)) for n in (service, kind.name, msg.step)))
            silent = config.get("silent", {})
            attempts = silent.get(service, []) + silent.get(kind.name, []) + silent.get(msg.step, [])
            if msg.attempt in attempts or 0 in attempts:
                return ()
            ids = (kind.name, msg.saga_id, msg.step, msg.attempt)
            if named(kind.name, "fail_always", msg.step):
                reply = replies.failure(*ids, retryable=False)
            elif chance(env.message_id, "fail") < config.get("fail_rate", 0.0):
                reply = replies.failure(*ids, retryable=True)
            else:
                reply = replies.success(*ids)
        elif isinstance(msg, st.CompensateStep):
            ids = (msg.kind, msg.saga_id, msg.step, msg.attempt)
            if named(msg.kind, "compensation_fail", msg.step):
                reply = replies.compensation_failed(*ids, "simulated: cannot undo")
            else:
                reply = replies.compensated(*ids)
        else:
            return ()
        one = envelope_for(
            reply,
            correlation_id=env.correlation_id,
            causation_id=env.message_id,
            message_id=derived_message_id(env.message_id, reply.TYPE),
            traceparent=telemetry.current_traceparent(),
        )
        lane = Streams.lane(reply_stream, Streams.priority_of(delivery.stream))  # as the real workers reply
        out = [Outgoing(lane, one)]
        if chance(env.message_id, "dup") < config.get("duplicate_rate", 0.0):
            redone = envelope_for(reply, correlation_id=env.correlation_id, causation_id=env.message_id)
            out += [Outgoing(lane, one), Outgoing(lane, redone)]
        return out

    return handle


async def main() -> None:
    settings = Settings()
    telemetry.setup_tracing("sim", settings.otlp_endpoint)  # as real workers do (the tracing bench)
    config = json.loads(os.environ.get("SIM_CONFIG", "{}"))
    bus = open_bus(settings, service="sim")
    for service in config.get("only", KINDS.services()):
        handler = make_handler(service, settings.streams, config)
        for queue in KINDS.queues(service):
            for stream in settings.streams.lanes(settings.streams.commands(queue)):  # the express lane first
                bus.subscribe(stream, handler, group=str(service), dedupe=True)
    await serve_until_sigterm(bus, f"sim workers ready {uuid.uuid4().hex[:4]}")
    telemetry.shutdown_tracing()


if __name__ == "__main__":
    asyncio.run(main())
