"""The saga list's filter as it lives in the page's URL: read from the query string into
the read model's ``SagaFilter``, each bad value named (never dropped in silence). Pure."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

from alphasaga_contracts import SagaState
from alphasaga_readmodel.summaries import SagaFilter

PAGE = 50
FIELDS = (
    "q",
    "state",
    "workflow",
    "version",
    "dataset",
    "verdict",
    "min_sharpe",
    "max_sharpe",
    "after",
    "before",
    "sort",
)
_MAX_LEN = 200
_PREFIX = re.compile(r"[0-9a-f-]{1,36}")
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


@dataclass
class ListQuery:
    """The filter the page shows, as given (for the form), and as the read model takes it."""

    given: dict[str, str] = field(default_factory=dict)
    where: SagaFilter = field(default_factory=SagaFilter)
    errors: list[str] = field(default_factory=list)

    def url(self, **changes: str | None) -> str:
        """The query string of this filter with ``changes`` (None removes a field)."""
        merged = {**self.given, **changes}
        return urlencode({k: v for k, v in merged.items() if v})


def parse(params: Mapping[str, str], *, cursor: tuple[dt.datetime, object] | None = None) -> ListQuery:
    given = {k: params[k].strip()[:_MAX_LEN] for k in FIELDS if params.get(k, "").strip()}
    errors: list[str] = []
    q = ListQuery(given=given, errors=errors)
    kwargs: dict[str, object] = {"limit": PAGE + 1}

    def check(name: str, ok: bool, why: str) -> bool:
        if not ok:
            errors.append(f"{name}: {why}")
        return ok

    if (v := given.get("q")) and check("saga id", bool(_PREFIX.fullmatch(v.lower())), "hex digits and dashes"):
        kwargs["id_prefix"] = v.lower()
    if (v := given.get("state")) and check("state", v in set(SagaState), f"one of {', '.join(SagaState)}"):
        kwargs["state"] = v
    if (v := given.get("workflow")) and check("workflow", bool(_NAME.fullmatch(v)), "a workflow's name"):
        kwargs["workflow"] = v
    if (v := given.get("version")) and check("version", v.isdigit() and 1 <= int(v) <= 1_000_000, "a number"):
        kwargs["workflow_version"] = int(v)
    if v := given.get("dataset"):
        kwargs["dataset"] = v
    if (v := given.get("verdict")) and check("verdict", v in ("accepted", "rejected"), "accepted or rejected"):
        kwargs["accepted"] = v == "accepted"
    for name, key in (("min_sharpe", "min_sharpe"), ("max_sharpe", "max_sharpe")):
        if (v := given.get(name)) is not None:
            number = _number(v)
            if check(name.replace("_", " "), number is not None and -100 <= number <= 100, "a number from -100 to 100"):
                kwargs[key] = number
    for name, key in (("after", "started_after"), ("before", "started_before")):
        if (v := given.get(name)) is not None:
            when = _time(v)
            if check(f"started {name}", when is not None, "a date or time (2026-01-05 or 2026-01-05T09:00)"):
                kwargs[key] = when
    if (v := given.get("sort")) and check("sort", v in ("newest", "oldest"), "newest or oldest"):
        kwargs["oldest_first"] = v == "oldest"
    low, high = kwargs.get("min_sharpe"), kwargs.get("max_sharpe")
    if isinstance(low, float) and isinstance(high, float) and low > high:
        errors.append("min sharpe is above max sharpe")
    if cursor is not None:
        kwargs["after"] = cursor
    q.where = SagaFilter(**kwargs)  # type: ignore[arg-type]
    return q


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def _time(text: str) -> dt.datetime | None:
    """An ISO date or time; without a zone it is UTC (what the page shows)."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
