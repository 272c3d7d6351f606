"""Times as the client API returns them: ISO 8601 in UTC, to the millisecond."""

from __future__ import annotations

import datetime as dt


def iso(when: dt.datetime) -> str:
    """UTC, millisecond precision: readable, and accepted back by every parser of ISO 8601."""
    return when.astimezone(dt.UTC).isoformat(timespec="milliseconds")
