"""Without an exporter, a handler still passes the incoming traceparent on."""

from __future__ import annotations

import uuid

from alphasaga_contracts import saga as sg
from alphasaga_shared import telemetry
from alphasaga_shared.wire import envelope_for

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_incoming_traceparent_is_current_inside_the_handler_only() -> None:
    env = envelope_for(sg.CancelSaga(saga_id=uuid.uuid4()), correlation_id="c", traceparent=TRACEPARENT)
    assert telemetry.current_traceparent() == ""
    with telemetry.consume_span(env, "s"):
        assert telemetry.current_traceparent() == TRACEPARENT
    assert telemetry.current_traceparent() == ""
