"""Look-ahead checks already passed, by what they checked (issue #25: work skipped when a
step's inputs were already seen).

The check's verdict, its cuts and the full-data run are a deterministic function of the
strategy's source, the bars, and the sandbox it ran in under its limits: the cuts come
from the number of bars, each run is a fresh confined process, the comparisons are done
here. So a check that passed for the same source on the same bars (both by SHA-256) in
the same kind of sandbox under the same limits need not run again: the second saga gets
the first one's report, and says so in its sandbox record. Failures are not kept (a
rejected strategy costs its check each time, as before). Bounded: the least recently
used report goes first. Thread-safe (the service runs checks in threads).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import astuple

from .lookahead import LookaheadReport
from .sandbox import SandboxLimits

DEFAULT_SIZE = 64  # a report holds the full-data run's frame: ~0.3 MB on 5,000 bars


def check_key(source: str, dataset_sha256: str, sandbox_kind: str, limits: SandboxLimits) -> str:
    """What a check's verdict depends on, as one SHA-256: the source, the bars (the SHA-256
    of the dataset artifact they were read from), the sandbox and its limits."""
    source_sha256 = hashlib.sha256(source.encode()).hexdigest()
    return hashlib.sha256(f"{source_sha256}\0{dataset_sha256}\0{sandbox_kind}\0{astuple(limits)}".encode()).hexdigest()


class ProvenChecks:
    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        if size < 0:
            raise ValueError("the number of reports kept cannot be negative")
        self.size = size
        self._reports: OrderedDict[str, LookaheadReport] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0

    def get(self, key: str) -> LookaheadReport | None:
        with self._lock:
            report = self._reports.get(key)
            if report is not None:
                self._reports.move_to_end(key)
                self.hits += 1
            return report

    def put(self, key: str, report: LookaheadReport) -> None:
        if self.size == 0:
            return
        with self._lock:
            self._reports[key] = report
            self._reports.move_to_end(key)
            while len(self._reports) > self.size:
                self._reports.popitem(last=False)
