"""Conditions: held since their first report, overdue past their bound."""

from __future__ import annotations

import time

from alphasaga_shared.conditions import Conditions


def test_a_condition_keeps_its_first_since_and_is_overdue_only_past_its_bound() -> None:
    c = Conditions()
    c.begin("pg", "waiting for PostgreSQL", bound_s=0.05)
    first = c.held()["pg"].since
    c.begin("pg", "waiting for PostgreSQL (still)", bound_s=0.05)
    assert c.held()["pg"].since == first and c.held()["pg"].reason.endswith("(still)")
    assert c.overdue() == {}
    c.begin("never", "no bound")
    time.sleep(0.06)
    assert set(c.overdue()) == {"pg"}
    c.end("pg")
    assert set(c.held()) == {"never"} and c.overdue() == {}
