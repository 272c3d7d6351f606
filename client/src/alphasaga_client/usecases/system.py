"""The system as a front end shows it: readiness of the servers and the services' consumer
groups, and each group's lag, for viewers and up."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .caller import Caller

if TYPE_CHECKING:
    from ..operations import GroupLag, Probe


async def readiness(c: Caller) -> dict[str, Probe]:
    c.require("viewer")
    return await c.client.checks()


async def group_lags(c: Caller) -> list[GroupLag]:
    c.require("viewer")
    return await c.client.group_lags()
