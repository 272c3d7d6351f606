"""``alphasaga campaign`` refuses a campaign its contract refuses before anything is sent:
one error line, exit 2, and no server is needed to say so (the URLs point nowhere)."""

from __future__ import annotations

import os

import pytest

from cli.tests.clirunner import alphasaga, assert_one_line_error

NOWHERE = {
    **os.environ,
    "ALPHASAGA_REDIS_URL": "redis://127.0.0.1:1/0",
    "ALPHASAGA_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--budget", "1000"], "budget"),
        (["--datasets", "sp500,moon"], "unknown dataset"),
        (["--families", "momentum"], "families"),
        (["--concurrency", "0"], "concurrency"),
    ],
)
def test_an_invalid_campaign_is_refused_before_anything_is_sent(args: list[str], says: str) -> None:
    result = alphasaga(NOWHERE, "campaign", "submit", *args)
    assert_one_line_error(result, 2, contains=says)


def test_there_is_no_way_to_give_a_campaign_its_trial_count() -> None:
    result = alphasaga(NOWHERE, "campaign", "submit", "--trials", "5")
    assert result.code == 2 and "No such option" in result.err
