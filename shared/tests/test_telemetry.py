"""Tracing's pure parts: without an exporter a handler still passes the incoming
traceparent on; trace ids of sagas, derived span ids, and what log lines carry."""

from __future__ import annotations

import json
import logging
import uuid

from alphasaga_contracts import saga as sg
from alphasaga_contracts.tracing import saga_trace_id
from alphasaga_shared import telemetry
from alphasaga_shared.telemetry import JsonFormatter, SpanIds
from alphasaga_shared.wire import envelope_for

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_incoming_traceparent_is_current_inside_the_handler_only() -> None:
    env = envelope_for(sg.CancelSaga(saga_id=uuid.uuid4()), correlation_id="c", traceparent=TRACEPARENT)
    assert telemetry.current_traceparent() == ""
    with telemetry.consume_span(env, "s"):
        assert telemetry.current_traceparent() == TRACEPARENT
    assert telemetry.current_traceparent() == ""


SAGA = uuid.UUID("6f1c2a9e-0000-4000-8000-000000000001")
W3C_EXAMPLE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_saga_is_in_its_request_trace_or_else_in_the_trace_named_by_its_id() -> None:
    assert saga_trace_id(SAGA, W3C_EXAMPLE) == "4bf92f3577b34da6a3ce929d0e0e4736"
    for broken in ("", "junk", "00-zz-00f067aa0ba902b7-01", f"00-{'0' * 32}-00f067aa0ba902b7-01"):
        assert saga_trace_id(SAGA, broken) == SAGA.hex, broken


def test_derived_span_ids_are_stable_distinct_and_never_zero() -> None:
    a = telemetry.derived_span_id(SAGA, "step", "ml", 1)
    assert a == telemetry.derived_span_id(SAGA, "step", "ml", 1)
    assert a != telemetry.derived_span_id(SAGA, "step", "ml", 2) != telemetry.derived_span_id(SAGA, "saga")
    assert 0 < a < 2**64


def test_span_ids_round_trip_through_a_traceparent() -> None:
    ids = SpanIds(int(SAGA.hex, 16), telemetry.derived_span_id(SAGA, "saga"), sampled=True)
    parsed = telemetry.parse_traceparent(ids.traceparent)
    assert parsed is not None
    assert (parsed.trace_id, parsed.span_id, parsed.trace_flags.sampled) == (ids.trace_id, ids.span_id, True)
    assert telemetry.parse_traceparent("") is None and telemetry.parse_traceparent("nonsense") is None
    assert [link.context.span_id for link in telemetry.links_to([W3C_EXAMPLE, W3C_EXAMPLE, "", "x"])] == [
        0x00F067AA0BA902B7
    ]


def test_a_log_line_names_the_saga_and_the_trace_of_the_message_being_handled() -> None:
    formatter = JsonFormatter("ml")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "training", None, None)
    assert "saga_id" not in json.loads(formatter.format(record))
    token = telemetry._passthrough.set(W3C_EXAMPLE)  # what consume_span sets without an exporter
    try:
        with telemetry.about_saga(str(SAGA)):
            line = json.loads(formatter.format(record))
    finally:
        telemetry._passthrough.reset(token)
    assert line["saga_id"] == str(SAGA) and line["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert line["service"] == "ml" and line["msg"] == "training"
