"""What is wrong with a service right now, each since when: "waiting for PostgreSQL",
"consumer groups missing". The probes read them, and the runner ends the process when one
lasts past its bound, so that a supervisor (Kubernetes, ``alphasaga up``) restarts it.

* While any condition holds, ``/health/ready`` answers 503 and names it.
* A condition held longer than its bound turns ``/health/live`` to 503, and the runner's
  watchdog stops the process with one line naming it (exit code 1).

One instance per process (``CONDITIONS``): the parts that meet a problem (the bus, the
loops, a handler's error policy) and the runner that acts on it do not know each other.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Condition:
    reason: str  # one line, for the probe and the exit message
    since: float  # time.monotonic() when it began
    bound_s: float | None  # held longer than this, the process is not live; None: never

    def age(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.since

    def overdue(self, now: float | None = None) -> bool:
        return self.bound_s is not None and self.age(now) > self.bound_s


class Conditions:
    def __init__(self) -> None:
        self._held: dict[str, Condition] = {}

    def begin(self, name: str, reason: str, *, bound_s: float | None = None) -> None:
        """``name`` holds (again): its first ``since`` is kept, its reason updated."""
        held = self._held.get(name)
        since = held.since if held is not None else time.monotonic()
        self._held[name] = Condition(reason, since, bound_s)

    def end(self, name: str) -> None:
        self._held.pop(name, None)

    def held(self) -> dict[str, Condition]:
        return dict(self._held)

    def overdue(self) -> dict[str, Condition]:
        now = time.monotonic()
        return {name: c for name, c in self._held.items() if c.overdue(now)}

    def clear(self) -> None:
        self._held.clear()


CONDITIONS = Conditions()
