"""The fixed program that runs a strategy inside the sandbox.

``sandbox.run_strategy`` copies this file into a fresh work directory next to
``strategy.py``, ``bars.parquet`` and ``request.json`` and starts it as
``python -I -B runner.py WORKDIR``. It is the only trusted code in the sandboxed process.

It lowers its own resource limits before anything else, so they cover the imports of
numpy and pandas and everything the strategy does; that also spares the parent a
``preexec_fn``, which is unsafe in a multi-threaded service.

For every requested length (the truncations, ascending, then the full data) it imports
the strategy afresh, calls the entry points on a copy of the bars, checks the outputs
and writes ``result-<length>.parquet`` (features plus ``signal``). Longer runs come after
shorter ones, so state smuggled between runs can never carry later bars into an earlier
run. ``status.json`` says how it ended; the exit code is 0 only when everything passed.

Only the standard library, numpy, pandas and pyarrow are imported here: the sandbox
cannot see this package.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

REQUEST_FILE = "request.json"
STATUS_FILE = "status.json"
STRATEGY_FILE = "strategy.py"
BARS_FILE = "bars.parquet"
SIGNAL_COLUMN = "signal"
OUTPUT_FILE_BYTES = 64 << 20
OPEN_FILES = 256
TRACEBACK_CHARS = 4000
DETAIL_CHARS = 1000
# RFC 5737 documentation address: never routed, so probing it sends nothing anywhere.
PROBE_ADDRESS = ("192.0.2.1", 9)


class OutputProblem(Exception):
    """An entry point returned something that breaks the contract."""


def result_file(length: int) -> str:
    """Name of the output for the run on the first ``length`` bars."""
    return f"result-{length}.parquet"


def main(argv: list[str]) -> int:
    """Run the request in ``argv[1]`` and report through ``status.json``."""
    workdir = Path(argv[1])
    request = json.loads((workdir / REQUEST_FILE).read_text())
    apply_limits(int(request["cpu_seconds"]), int(request["memory_bytes"]))
    try:
        status = handle(workdir, request)
    except MemoryError:
        status = {"status": "memory", "detail": "MemoryError: the memory limit was reached"}
    except Exception as exc:
        # Failures outside the strategy's own calls are the sandbox's, not the strategy's.
        status = {"status": "internal", "detail": f"{type(exc).__name__}: {exc}"}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    status["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    status["peak_rss_bytes"] = usage.ru_maxrss * 1024
    write_status(workdir, status)
    return 0 if status["status"] == "ok" else 1


def apply_limits(cpu_seconds: int, memory_bytes: int) -> None:
    """Lower this process's limits; they can never be raised again without privileges.

    The CPU soft limit sends SIGXCPU, which kills the process; the hard limit one second
    later is SIGKILL, for the case where SIGXCPU is somehow ignored.
    """
    _lower(resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1)
    _lower(resource.RLIMIT_AS, memory_bytes, memory_bytes)
    _lower(resource.RLIMIT_FSIZE, OUTPUT_FILE_BYTES, OUTPUT_FILE_BYTES)
    _lower(resource.RLIMIT_CORE, 0, 0)
    _lower(resource.RLIMIT_NOFILE, OPEN_FILES, OPEN_FILES)


def _lower(which: int, soft: int, hard: int) -> None:
    _, current_hard = resource.getrlimit(which)
    if current_hard != resource.RLIM_INFINITY:
        hard = min(hard, current_hard)
    resource.setrlimit(which, (min(soft, hard), hard))


def handle(workdir: Path, request: dict[str, Any]) -> dict[str, Any]:
    """Dispatch on the request's command."""
    if request["command"] == "probe":
        return {"status": "ok", "probe": probe(workdir)}
    return run(workdir, [int(t) for t in request["truncations"]])


def run(workdir: Path, truncations: list[int]) -> dict[str, Any]:
    """Run the strategy on every prefix length and write each result."""
    try:
        import pandas as pd  # type: ignore[import-untyped, unused-ignore]

        bars = pd.read_parquet(workdir / BARS_FILE)
    except MemoryError:
        # Before any strategy code: the limit is misconfigured, the strategy is innocent.
        return {"status": "internal", "detail": "memory limit too small to import pandas"}
    lengths = sorted({*truncations, len(bars)})
    seconds: dict[str, float] = {}
    for length in lengths:
        started = time.perf_counter()
        try:
            frame = run_once(workdir / STRATEGY_FILE, bars.iloc[:length].copy())
        except OutputProblem as exc:
            return {"status": "output", "detail": f"{exc} (on the first {length} bars)"[:DETAIL_CHARS]}
        except MemoryError:
            raise
        except BaseException as exc:
            return {
                "status": "error",
                "detail": f"{type(exc).__name__}: {exc}"[:DETAIL_CHARS],
                "traceback": "".join(traceback.format_exception(exc))[-TRACEBACK_CHARS:],
            }
        seconds[str(length)] = time.perf_counter() - started
        frame.to_parquet(workdir / result_file(length))
    return {"status": "ok", "compute_seconds": seconds}


def run_once(path: Path, bars: Any) -> Any:
    """Fresh module, copies of the inputs: no run can see another run's objects."""
    module = load_strategy(path)
    features = module.compute_features(bars.copy())
    frame = checked_features(features, bars.index)
    signal = module.compute_signal(bars.copy(), features.copy())
    frame[SIGNAL_COLUMN] = checked_signal(signal, bars.index)
    return frame


def load_strategy(path: Path) -> ModuleType:
    """Execute ``path`` as a new module object, without touching ``sys.modules``."""
    spec = importlib.util.spec_from_file_location("strategy", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def checked_features(features: Any, index: Any) -> Any:
    """The features as a float64 frame, or ``OutputProblem`` saying what is wrong."""
    import pandas as pd  # type: ignore[import-untyped, unused-ignore]

    if not isinstance(features, pd.DataFrame):
        raise OutputProblem(f"compute_features returned {type(features).__name__}, not DataFrame")
    if not features.index.equals(index):
        raise OutputProblem("compute_features changed the index")
    names = list(features.columns)
    if not all(isinstance(name, str) for name in names):
        raise OutputProblem("feature column names must be strings")
    if len(set(names)) != len(names) or SIGNAL_COLUMN in names:
        raise OutputProblem(f"feature columns must be unique and not {SIGNAL_COLUMN!r}")
    try:
        return features.astype("float64")
    except (TypeError, ValueError) as exc:
        raise OutputProblem(f"features must be numeric: {exc}") from None


def checked_signal(signal: Any, index: Any) -> Any:
    """The signal as float64, NaN or within [-1, 1], or ``OutputProblem``."""
    import numpy as np
    import pandas as pd  # type: ignore[import-untyped, unused-ignore]

    if not isinstance(signal, pd.Series):
        raise OutputProblem(f"compute_signal returned {type(signal).__name__}, not Series")
    if not signal.index.equals(index):
        raise OutputProblem("compute_signal changed the index")
    try:
        values = signal.astype("float64")
    except (TypeError, ValueError) as exc:
        raise OutputProblem(f"signal must be numeric: {exc}") from None
    array = values.to_numpy()
    outside = ~np.isnan(array) & ~((array >= -1.0) & (array <= 1.0))
    if outside.any():
        first = int(np.argmax(outside))
        raise OutputProblem(f"signal must be NaN or within [-1, 1]; got {array[first]!r} at {index[first]}")
    return values


def probe(workdir: Path) -> dict[str, Any]:
    """What the sandbox allows: network interfaces, outbound connect, writable paths."""
    import socket

    report: dict[str, Any] = {
        "interfaces": sorted(name for _, name in socket.if_nameindex()),
        "environment": sorted(os.environ),
    }
    try:
        with socket.create_connection(PROBE_ADDRESS, timeout=0.5):
            report["connect_error"] = None
    except OSError as exc:
        report["connect_error"] = f"{type(exc).__name__}: {exc}"
    writable = []
    for directory in (workdir, workdir.parent, Path(sys.prefix), Path("/tmp"), Path("/dev/shm")):
        target = directory / f"alphasaga-probe-{os.getpid()}"
        try:
            target.write_text("probe")
            target.unlink()
            writable.append(str(directory))
        except OSError:
            pass
    report["writable"] = writable
    report["workdir"] = str(workdir)
    return report


def write_status(workdir: Path, status: dict[str, Any]) -> None:
    """Write then rename, so the parent never reads half a status."""
    partial = workdir / (STATUS_FILE + ".partial")
    partial.write_text(json.dumps(status))
    partial.replace(workdir / STATUS_FILE)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
