"""The NOTIFY payload that carries a commit's outbox rows to the relay (``notice``): rows
that fit in one payload PostgreSQL accepts are carried, and read back as the same stream
entries the tail would publish; more is left to the tail; anything else is refused as a
notice."""

from __future__ import annotations

import json
import uuid

import pytest

from alphasaga_contracts import saga as sg
from alphasaga_contracts.research import ResearchRequest
from alphasaga_shared.eventstore import JsonText, NewEvent
from alphasaga_shared.outbox_rows import NOTICE_MAX_BYTES, notice, outbox_events, read_notice, wire_fields
from alphasaga_shared.wire import Outgoing, envelope_for


def starts(n: int, note: str = "") -> list[NewEvent]:
    out = []
    for _ in range(n):
        saga_id = uuid.uuid4()
        start = sg.StartResearch(saga_id=saga_id, request=ResearchRequest(dataset="sp500"), workflow="research")
        out.append(Outgoing("ns:cmd:orchestrator", envelope_for(start, correlation_id=str(saga_id))))
    rows = outbox_events(out)
    if note:  # a body padded past what one payload holds
        rows = [NewEvent(r.type, JsonText(json.dumps({"note": note})), r.metadata, r.event_id) for r in rows]
    return rows


def carried(payload: str) -> list[tuple[uuid.UUID, str, dict[str, str]]]:
    return read_notice(payload) if payload else []


def test_the_rows_of_a_commit_are_carried_as_the_entries_the_tail_would_publish() -> None:
    rows = starts(3)
    payload = notice(rows)
    assert len(payload.encode()) <= NOTICE_MAX_BYTES
    assert carried(payload) == [(r.event_id, *wire_fields(r)) for r in rows]


def test_rows_too_many_or_too_large_for_one_payload_are_left_to_the_tail_with_a_plain_wake_up() -> None:
    assert notice(starts(40)) == "", "forty starts do not fit in one payload"
    assert notice(starts(1, note="é" * NOTICE_MAX_BYTES)) == ""


def test_as_many_rows_as_fit_are_carried_and_one_more_is_not() -> None:
    rows = starts(40)
    fit = max(n for n in range(1, 41) if notice(rows[:n]))
    whole = json.dumps([[str(r.event_id), *wire_fields(r)] for r in rows[: fit + 1]], separators=(",", ":"))
    assert len(notice(rows[:fit]).encode()) <= NOTICE_MAX_BYTES < len(whole), "the limit is where it says"
    assert notice(rows[: fit + 1]) == ""


def test_text_beyond_ascii_is_carried_exactly() -> None:
    (row,) = starts(1, note="prix en € — 株価")
    assert carried(notice([row])) == [(row.event_id, *wire_fields(row))]


AN_ID = uuid.UUID(int=7)  # fixed: the parameters are test ids, the same in every worker


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        '{"a": 1}',
        "[[1, 2]]",
        '[["not-a-uuid", "s", {}]]',
        f'[["{AN_ID}", 5, {{}}]]',
        f'[["{AN_ID}", "s", {{"body": 1}}]]',
        f'[["{AN_ID}", "s", []]]',
    ],
)
def test_anything_else_is_not_a_notice(payload: str) -> None:
    with pytest.raises(ValueError):
        read_notice(payload)
