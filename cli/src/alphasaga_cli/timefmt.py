"""Times as the command line reads and prints them: ISO 8601 in UTC, or an age."""

from __future__ import annotations

import datetime as dt
import re

from alphasaga_client.timefmt import iso

from .errors import CliError

__all__ = ["iso", "parse_when", "seconds"]

_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_when(text: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """``2024-05-01``, ``2024-05-01T12:00:00+02:00`` (no offset means UTC, as printed) or
    an age: ``90s``, ``10m``, ``2h``, ``3d``, ``1w`` before now."""
    value = text.strip()
    age = _AGE.match(value.lower())
    if age:
        now = now or dt.datetime.now(dt.UTC)
        return now - dt.timedelta(seconds=float(age.group(1)) * _UNIT_S[age.group(2)])
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise CliError(
            f"cannot read the time {text!r}: use ISO 8601 (2024-05-01T12:00:00Z) or an age such as 10m, 2h, 3d"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def seconds(value: float) -> str:
    if value < 60:
        return f"{value:.1f}s"
    minutes, secs = divmod(int(value), 60)
    return f"{minutes}m{secs:02d}s"
