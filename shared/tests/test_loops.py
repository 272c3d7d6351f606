"""Background loops: a transient failure is ridden out with backoff, logged once per
outage and counted; any other failure ends the loop with its reason."""

from __future__ import annotations

import asyncio
import logging
import uuid

import asyncpg
import pytest

from alphasaga_shared import metrics
from alphasaga_shared.loops import run_forever


async def test_an_outage_is_retried_logged_once_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    name = f"loop-{uuid.uuid4().hex[:6]}"
    passes = 0

    async def one_pass() -> bool:
        nonlocal passes
        passes += 1
        if passes <= 5:
            raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
        if passes == 7:
            raise asyncpg.AdminShutdownError("terminating connection due to administrator command")
        if passes == 9:
            raise asyncio.CancelledError  # the way out of the loop for this test
        return False

    with caplog.at_level(logging.WARNING, logger="alphasaga_shared.loops"), pytest.raises(asyncio.CancelledError):
        await run_forever(name, one_pass, lambda: asyncio.sleep(0), max_backoff_s=0.01)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(name)]
    assert len([line for line in lines if "retrying" in line]) == 2, lines  # two outages, however many tries
    assert len([line for line in lines if "recovered" in line]) == 2, lines
    assert "ConnectionDoesNotExistError" in lines[0]
    assert metrics.OUTAGES.labels(name)._value.get() == 2


async def test_a_failure_that_is_not_transient_ends_the_loop_with_its_reason() -> None:
    async def one_pass() -> bool:
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError, match="a bug"):
        await run_forever("buggy", one_pass, lambda: asyncio.sleep(0))
