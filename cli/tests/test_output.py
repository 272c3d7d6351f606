"""What the command line prints for people: the cells of a table as they are."""

from __future__ import annotations

import pytest

from alphasaga_cli.output import fields, table


def test_a_table_prints_brackets_in_its_cells_as_text_not_markup(capsys: pytest.CaptureFixture[str]) -> None:
    verdict = "rejected: Sharpe ratio -0.050 is below 0.300 [out of sample 2013-01-03 to 2018-12-31]"
    table(["saga", "outcome"], [["3f1c2a9e", verdict], ["5d2da988", "FileNotFoundError: [/tmp/x] missing"]])
    shown = capsys.readouterr().out
    assert "[out of sample 2013-01-03 to 2018-12-31]" in shown
    assert "[/tmp/x]" in shown  # rich's markup parser refused this one outright


def test_a_status_lines_up_its_values_after_their_names(capsys: pytest.CaptureFixture[str]) -> None:
    fields([["saga", "3f1c2a9e"], ["completed", "reasoning, codegen [2 attempts]"]])
    assert capsys.readouterr().out.splitlines() == ["saga       3f1c2a9e", "completed  reasoning, codegen [2 attempts]"]
