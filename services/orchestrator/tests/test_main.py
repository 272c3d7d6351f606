"""``python -m alphasaga_orchestrator [relay | projector]``: which part runs, and help."""

from __future__ import annotations

import pytest

from alphasaga_orchestrator import __main__ as entry


def test_help_names_the_parts_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    entry.main(["--help"])
    shown = capsys.readouterr().out
    assert all(part in shown for part in entry.PARTS) and "ALPHASAGA_RUN_RELAY=false" in shown


def test_an_unknown_part_is_one_clear_refusal_with_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        entry.main(["relay", "--verbose"])
    assert exited.value.code == 2
    assert "unexpected argument(s): relay --verbose" in capsys.readouterr().err


def test_a_part_named_runs_that_part_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []
    monkeypatch.setitem(entry.PARTS, "relay", lambda: ran.append("relay"))
    monkeypatch.setattr(entry, "run_service", lambda name, setup: ran.append(name))
    entry.main(["relay"])
    entry.main([])
    assert ran == ["relay", "orchestrator"]
