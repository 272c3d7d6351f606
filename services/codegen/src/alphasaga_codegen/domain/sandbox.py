"""Run strategy code in a separate, resource-limited Python process without network.

Each run gets a fresh temporary directory holding the strategy, the bars (Parquet), a
request and a copy of ``sandbox_runner.py``; the child writes its results there and
nowhere else. Three kinds of containment (``docs/security.md`` has what each stops):

``bubblewrap`` (the strong one, required in production)
    ``bwrap`` with every namespace unshared (network, PID, IPC, UTS, user), all
    capabilities dropped, and a root holding only read-only binds of the system and
    Python directories plus the work directory, writable, at ``/sandbox``. Used when
    ``bwrap`` is installed and a trial sandbox starts (user namespaces can be disabled
    inside containers).
``namespaces`` (the fallback)
    ``unshare`` puts the runner in fresh mount, network, PID, IPC and UTS namespaces
    (and a user namespace when the service is not root). The runner makes every mount
    read-only but its work directory, then drops to ``UNPRIVILEGED_UID`` (service
    running as root) or gives up every capability: no write outside the work directory,
    no network, and every process it starts dies with it.
``rlimits`` (only when asked for by name)
    Resource limits and an empty environment, nothing else: the filesystem and network
    are the service user's. Never chosen by ``auto``.

In every kind the runner lowers RLIMIT_CPU, RLIMIT_AS, RLIMIT_FSIZE, RLIMIT_NOFILE and
RLIMIT_CORE on itself before importing anything heavy, installs a seccomp filter when
libseccomp is present (no sockets, no new processes), and the parent kills the whole
process group when the wall-clock limit passes. CPU time includes interpreter start-up
and the numpy/pandas imports (about 1 s), and the memory limit is address space,
of which numpy, pandas and pyarrow need about 350 MiB before any data arrives.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from . import sandbox_runner as runner
from .errors import (
    SandboxError,
    SandboxLimitExceeded,
    SandboxUnavailable,
    StrategyOutputError,
    StrategyRuntimeError,
)
from .validate import validate_strategy

SandboxKind = Literal["bubblewrap", "namespaces", "rlimits"]
SandboxMode = Literal["auto", "bubblewrap", "namespaces", "rlimits"]
STRONG_SANDBOX: SandboxKind = "bubblewrap"

RUNNER_PATH = Path(runner.__file__)
BWRAP_WORKDIR = "/sandbox"
# nobody: the uid the namespaces sandbox runs strategies as when the service is root.
UNPRIVILEGED_UID = 65534
STDERR_TAIL_CHARS = 4000
# Measured: numpy + pandas + pyarrow start in 384 MiB of address space, not in 320.
MIN_MEMORY_BYTES = 384 << 20
_SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc/ld.so.cache")
_MEMORY_HINTS = ("MemoryError", "Cannot allocate memory", "bad_alloc", "out of memory")


@dataclass(frozen=True)
class SandboxLimits:
    """Per-run limits. The defaults fit a few thousand daily bars with room to spare."""

    cpu_seconds: int = 20
    memory_bytes: int = 1 << 30
    wall_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.cpu_seconds < 1:
            raise ValueError("cpu_seconds must be at least 1 (RLIMIT_CPU counts whole seconds)")
        if self.memory_bytes < MIN_MEMORY_BYTES:
            raise ValueError(f"memory_bytes below {MIN_MEMORY_BYTES >> 20} MiB cannot even import pandas")
        if not (math.isfinite(self.wall_seconds) and self.wall_seconds > 0):
            raise ValueError("wall_seconds must be positive and finite")


DEFAULT_LIMITS = SandboxLimits()


@dataclass(frozen=True, eq=False)
class SandboxResult:
    """Outputs of one sandboxed run.

    ``frame`` holds the features and a ``signal`` column, indexed like the input bars.
    ``guards`` lists what the runner put in force beyond the kind itself (``read-only
    mounts``, ``unprivileged``, ``seccomp``). ``runs`` counts the strategy runs (the
    look-ahead variants plus the full data), ``mismatch`` is the earliest difference a
    variant showed (None: none). Times are seconds: ``wall_seconds`` for the whole
    process including start-up, ``cpu_seconds`` as the child measured it,
    ``compute_seconds`` for all the strategy runs, ``job_cpu_seconds`` for the CPU the
    job used once handed over (without the runner's start-up and imports).
    """

    sandbox: SandboxKind
    guards: tuple[str, ...]
    frame: pd.DataFrame
    runs: int
    values_compared: int
    mismatch: Mapping[str, Any] | None
    wall_seconds: float
    cpu_seconds: float
    compute_seconds: float
    peak_memory_bytes: int
    job_cpu_seconds: float = math.nan

    @property
    def label(self) -> str:
        """The kind and its extra guards, e.g. ``bubblewrap+seccomp``: what a report names."""
        return "+".join([self.sandbox, *(g for g in self.guards if g == "seccomp")])


@dataclass(frozen=True)
class SandboxProbe:
    """What code inside the sandbox could reach, as the runner saw it."""

    sandbox: SandboxKind
    guards: tuple[str, ...]
    uid: int
    interfaces: tuple[str, ...]
    connect_error: str | None
    writable: tuple[str, ...]
    workdir: str
    environment: tuple[str, ...]

    @property
    def network_isolated(self) -> bool:
        """Only loopback exists and an outbound connection failed."""
        return set(self.interfaces) <= {"lo"} and self.connect_error is not None

    @property
    def writable_outside_workdir(self) -> tuple[str, ...]:
        return tuple(path for path in self.writable if path != self.workdir)


@dataclass(frozen=True)
class _Outcome:
    returncode: int
    timed_out: bool
    wall_seconds: float
    status: dict[str, Any] | None
    stderr_tail: str


@functools.cache
def bubblewrap_available() -> bool:
    """Whether a bubblewrap sandbox with our exact options starts a Python here.

    Probed once per process with the real mount layout, because ``bwrap`` being
    installed says nothing about user namespaces or /proc mounts being permitted.
    """
    return _bwrap_executable() is not None and _trial("bubblewrap")


@functools.cache
def namespaces_available() -> bool:
    """Whether the fallback can create its namespaces and confine a runner here."""
    return _unshare_executable() is not None and _trial("namespaces")


def _trial(kind: SandboxKind) -> bool:
    limits = SandboxLimits(cpu_seconds=20, memory_bytes=1 << 30, wall_seconds=30.0)
    try:
        outcome = _execute(limits, kind, {"command": "probe"})
    except OSError:
        return False
    return outcome.returncode == 0 and outcome.status is not None and outcome.status.get("status") == "ok"


def resolve_sandbox(mode: SandboxMode = "auto") -> SandboxKind:
    """The sandbox kind ``mode`` selects on this machine; ``auto`` never picks ``rlimits``."""
    if mode == "rlimits":
        return "rlimits"
    if mode in ("auto", "bubblewrap") and bubblewrap_available():
        return "bubblewrap"
    if mode == "bubblewrap":
        raise SandboxUnavailable("bubblewrap is not installed or cannot create namespaces here")
    if namespaces_available():
        return "namespaces"
    if mode == "namespaces":
        raise SandboxUnavailable("unshare is missing or the kernel refuses new namespaces here")
    raise SandboxUnavailable("no sandbox can start here: install bubblewrap, or allow user namespaces for unshare")


def run_strategy(
    source: str,
    bars: pd.DataFrame,
    *,
    limits: SandboxLimits = DEFAULT_LIMITS,
    lookahead: Mapping[str, Any] | None = None,
    mode: SandboxMode = "auto",
    validate: bool = True,
) -> SandboxResult:
    """Run the entry points of ``source`` on ``bars`` in a sandbox started for it.

    ``source`` is validated again first: the sandbox never executes code that has not
    passed the static rules (``validate=False`` exists for the escape-corpus tests, which
    measure the sandbox alone). ``lookahead`` asks for the variants of
    ``lookahead.check_no_lookahead`` in the same process, saving a start-up per variant.
    A service running many strategies keeps a ``Sandbox`` instead.
    """
    return Sandbox(resolve_sandbox(mode), limits, ahead=False).run(source, bars, lookahead=lookahead, validate=validate)


def _result(kind: SandboxKind, outcome: _Outcome, status: dict[str, Any], frame: pd.DataFrame) -> SandboxResult:
    mismatch = status.get("mismatch")
    return SandboxResult(
        sandbox=kind,
        guards=tuple(str(g) for g in status.get("guards", [])),
        frame=frame,
        runs=int(_number(status.get("runs"), default=1.0)),
        values_compared=int(_number(status.get("values_compared"), default=0.0)),
        mismatch=mismatch if isinstance(mismatch, dict) else None,
        wall_seconds=outcome.wall_seconds,
        cpu_seconds=_number(status.get("cpu_seconds")),
        compute_seconds=_number(status.get("compute_seconds")),
        peak_memory_bytes=int(_number(status.get("peak_rss_bytes"), default=0.0)),
        job_cpu_seconds=_number(status.get("job_cpu_seconds")),
    )


def _number(value: object, default: float = math.nan) -> float:
    """A statistic from the child's status, which is not trusted to be well-formed."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


def probe_sandbox(*, limits: SandboxLimits = DEFAULT_LIMITS, mode: SandboxMode = "auto") -> SandboxProbe:
    """Ask the runner what it can reach; for health checks and the sandbox's own tests."""
    kind = resolve_sandbox(mode)
    outcome = _execute(limits, kind, {"command": "probe"})
    report = _require_success(outcome, limits)["probe"]
    return SandboxProbe(
        sandbox=kind,
        guards=tuple(outcome.status.get("guards", []) if outcome.status else ()),
        uid=int(report["uid"]),
        interfaces=tuple(report["interfaces"]),
        connect_error=report["connect_error"],
        writable=tuple(report["writable"]),
        workdir=report["workdir"],
        environment=tuple(report["environment"]),
    )


def _check_bars(bars: pd.DataFrame) -> None:
    if not isinstance(bars, pd.DataFrame) or not isinstance(bars.index, pd.DatetimeIndex):
        raise ValueError("bars must be a DataFrame with a DatetimeIndex")
    if len(bars) == 0 or "close" not in bars.columns:
        raise ValueError("bars must be non-empty and have a close column")
    if not (bars.index.is_monotonic_increasing and bars.index.is_unique):
        raise ValueError("bars must be in date order without repeated dates")
    if not all(isinstance(column, str) for column in bars.columns):
        raise ValueError("bar column names must be strings")


@dataclass
class _Started:
    """A runner confined and waiting for its job in ``box``."""

    kind: SandboxKind
    limits: SandboxLimits
    tmp: tempfile.TemporaryDirectory[str]
    box: Path
    process: subprocess.Popen[bytes]

    def discard(self) -> None:
        """End it unused (closing its stdin lets it exit) and remove its directory."""
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _kill_group(self.process.pid)
            self.process.wait()
        self.tmp.cleanup()


def _start(kind: SandboxKind, limits: SandboxLimits) -> _Started:
    """Start a runner under ``kind``: it confines itself, imports, and waits for a job."""
    tmp = tempfile.TemporaryDirectory(prefix="alphasaga-codegen-")
    logs = Path(tmp.name)
    box = logs / "box"
    box.mkdir()
    request: dict[str, Any] = {"cpu_seconds": limits.cpu_seconds, "memory_bytes": limits.memory_bytes}
    (box / runner.REQUEST_FILE).write_text(json.dumps(request))
    shutil.copyfile(RUNNER_PATH, box / "runner.py")
    if kind == "namespaces":
        request["jail"] = {"uid": _prepare_for_uid(box, logs)}
        (box / runner.REQUEST_FILE).write_text(json.dumps(request))
    inner = BWRAP_WORKDIR if kind == "bubblewrap" else str(box)
    command = [sys.executable, "-I", "-B", f"{inner}/runner.py", inner]
    if kind == "bubblewrap":
        command = [*_bubblewrap_prefix(box), *command]
    elif kind == "namespaces":
        command = [*_unshare_prefix(), *command]
    with (logs / "stdout.txt").open("wb") as out, (logs / "stderr.txt").open("wb") as err:
        process = subprocess.Popen(
            command,
            cwd=box,
            env=_environment(inner),
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    return _Started(kind=kind, limits=limits, tmp=tmp, box=box, process=process)


def _finish(started: _Started, job: dict[str, Any]) -> _Outcome:
    """Hand ``job`` (its files already in the box) to the runner and wait for it,
    killing it at the wall-clock deadline, which counts from here."""
    box, process, limits = started.box, started.process, started.limits
    (box / runner.JOB_FILE).write_text(json.dumps(job))
    begun = time.perf_counter()
    timed_out = False
    try:
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # it died early: its status says why
            process.stdin.write(b"go\n")
            process.stdin.close()
        process.wait(timeout=limits.wall_seconds)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        # Also reached on KeyboardInterrupt or cancellation: never leave it running.
        if process.poll() is None:
            _kill_group(process.pid)
            process.wait()
    wall = time.perf_counter() - begun
    return _Outcome(
        returncode=process.returncode,
        timed_out=timed_out,
        wall_seconds=wall,
        status=_read_status(box),
        stderr_tail=(box.parent / "stderr.txt").read_text(errors="replace")[-STDERR_TAIL_CHARS:],
    )


class Sandbox:
    """Runs jobs in one kind of sandbox, with the next runner started ahead of time.

    Every job still gets a fresh process and work directory; only their start-up
    (interpreter, imports, confinement: about a second of CPU, most of it
    ``import pandas``) is paid while the previous job runs or the service waits, not
    when a job arrives. Thread-safe.
    """

    def __init__(self, kind: SandboxKind, limits: SandboxLimits = DEFAULT_LIMITS, *, ahead: bool = True) -> None:
        self.kind = kind
        self.limits = limits
        self.ahead = ahead
        self._lock = threading.Lock()
        self._next: _Started | None = None
        if ahead:
            atexit.register(self.close)

    def run(
        self,
        source: str,
        bars: pd.DataFrame,
        *,
        lookahead: Mapping[str, Any] | None = None,
        validate: bool = True,
    ) -> SandboxResult:
        """``run_strategy`` in this sandbox."""
        if validate:
            validate_strategy(source)
        _check_bars(bars)
        with self._lock:
            started, self._next = self._next, None
            if started is None or started.process.poll() is not None:
                if started is not None:  # died while waiting (killed, out of memory): a fresh one
                    started.discard()
                started = _start(self.kind, self.limits)
            try:
                (started.box / runner.STRATEGY_FILE).write_text(source, encoding="utf-8")
                bars.to_parquet(started.box / runner.BARS_FILE)
                outcome = _finish(started, {"command": "run", "lookahead": dict(lookahead or {})})
                status = _require_success(outcome, self.limits)
                frame = _read_result(started.box, bars.index)
            finally:
                started.tmp.cleanup()
                if self.ahead:
                    self._next = _start(self.kind, self.limits)
        return _result(self.kind, outcome, status, frame)

    def close(self) -> None:
        """Discard the runner started ahead, if any."""
        with self._lock:
            if self._next is not None:
                self._next.discard()
                self._next = None


def _execute(limits: SandboxLimits, kind: SandboxKind, job: dict[str, Any]) -> _Outcome:
    """One runner, started and given ``job`` at once (probes and trials)."""
    started = _start(kind, limits)
    try:
        return _finish(started, job)
    finally:
        started.tmp.cleanup()


def _prepare_for_uid(box: Path, logs: Path) -> int | None:
    """As root, hand the work directory to the uid the runner drops to; else None."""
    if os.geteuid() != 0:
        return None
    logs.chmod(0o711)  # traversable, not listable, so the runner can reach its box
    for path in [box, *box.iterdir()]:
        os.chown(path, UNPRIVILEGED_UID, UNPRIVILEGED_UID)
    return UNPRIVILEGED_UID


@functools.cache
def _unshare_executable() -> str | None:
    return shutil.which("unshare")


def _unshare_prefix() -> list[str]:
    """Fresh namespaces for the runner; a user namespace only when we are not root. It
    runs in a session of its own (so that its group can be killed on stop), which also
    takes it out of the service's: ``setpriv --pdeathsig`` makes it die with the service,
    killed with -9 or not, and ``--kill-child`` takes the runner with it."""
    setpriv = shutil.which("setpriv")
    args = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
    args += [_unshare_executable() or "unshare", "--mount", "--net", "--pid", "--ipc", "--uts"]
    args += ["--fork", "--kill-child", "--mount-proc"]
    if os.geteuid() != 0:
        args += ["--user", "--map-root-user"]
    return args


def _kill_group(pgid: int) -> None:
    """SIGKILL the session we started; under bubblewrap the sandbox dies with bwrap."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _read_status(box: Path) -> dict[str, Any] | None:
    try:
        status = json.loads((box / runner.STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None


def _require_success(outcome: _Outcome, limits: SandboxLimits) -> dict[str, Any]:
    """The runner's status when the run succeeded; otherwise raise what went wrong."""
    if outcome.timed_out:
        raise SandboxLimitExceeded("wall_clock", f"still running after {limits.wall_seconds:g} s; process group killed")
    status = outcome.status
    state = status.get("status") if status is not None else None
    if status is not None and state == "ok" and outcome.returncode == 0:
        return status
    if status is not None and state == "cpu":
        raise SandboxLimitExceeded("cpu_time", f"used more than {limits.cpu_seconds} s of CPU")
    if status is not None and state == "memory":
        raise SandboxLimitExceeded("memory", _memory_detail(limits, str(status.get("detail"))))
    if status is not None and state == "error":
        raise StrategyRuntimeError(str(status.get("detail")), str(status.get("traceback", "")))
    if status is not None and state == "output":
        raise StrategyOutputError(str(status.get("detail")))
    if status is not None and state == "internal":
        raise SandboxError(f"sandbox runner failed: {status.get('detail')}")
    _raise_for_exit(outcome, limits)
    raise SandboxError(f"sandbox runner exited with {outcome.returncode} and no status")


def _raise_for_exit(outcome: _Outcome, limits: SandboxLimits) -> None:
    """Explain a run that ended without a usable status from its exit code."""
    code = outcome.returncode
    # Killed children show as -N; bubblewrap reports its child's death as 128 + N.
    signum = -code if code < 0 else code - 128 if code > 128 else None
    tail = outcome.stderr_tail
    if signum == signal.SIGXCPU:
        raise SandboxLimitExceeded("cpu_time", f"used more than {limits.cpu_seconds} s of CPU")
    if signum == signal.SIGKILL:
        # Not our kill (that is the wall-clock case); RLIMIT_CPU's hard limit or the
        # kernel's out-of-memory killer. SIGXCPU comes first, so it is memory.
        raise SandboxLimitExceeded("memory", "killed by SIGKILL, most likely out of memory")
    if any(hint in tail for hint in _MEMORY_HINTS):
        raise SandboxLimitExceeded("memory", _memory_detail(limits, tail.strip()[-300:]))
    if signum == signal.SIGXFSZ:
        raise StrategyRuntimeError("wrote more output than the sandbox allows")
    if tail.startswith("bwrap:"):
        raise SandboxError(f"bubblewrap failed: {tail.strip()}")
    if signum is not None:
        raise StrategyRuntimeError(f"sandbox process died with signal {signum}", tail)
    if code != 0:
        raise StrategyRuntimeError(f"sandbox process exited with code {code}", tail)


def _memory_detail(limits: SandboxLimits, detail: str) -> str:
    return f"address space limited to {limits.memory_bytes >> 20} MiB: {detail}"


def _read_result(box: Path, index: pd.DatetimeIndex) -> pd.DataFrame:
    """Read the result back and re-check it: the child is not trusted to be honest."""
    path = box / runner.RESULT_FILE
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise SandboxError(f"cannot read sandbox result {path.name}: {exc}") from exc
    if not frame.index.equals(index) or runner.SIGNAL_COLUMN not in frame.columns:
        raise SandboxError(f"sandbox result {path.name} does not match the input bars")
    frame.index = index
    return frame


def _environment(workdir: str) -> dict[str, str]:
    """The child's whole environment: nothing inherited, one thread per library."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "NUMEXPR_NUM_THREADS": "1",
        "ARROW_DEFAULT_MEMORY_POOL": "system",
    }


@functools.cache
def _bwrap_executable() -> str | None:
    """Resolved once from the service's PATH; the child's PATH is deliberately minimal."""
    return shutil.which("bwrap")


def _bubblewrap_prefix(box: Path) -> list[str]:
    """``bwrap`` options: fresh namespaces, read-only system, writable ``/sandbox``."""
    args = [
        _bwrap_executable() or "bwrap",
        "--unshare-all",
        "--unshare-net",
        "--die-with-parent",
        "--new-session",
        "--cap-drop", "ALL",
    ]  # fmt: skip
    for kind, source, target in _read_only_layout():
        args += [f"--{kind}", source, target]
    args += [
        "--proc", "/proc",
        "--dev", "/dev",
        "--bind", str(box), BWRAP_WORKDIR,
        "--chdir", BWRAP_WORKDIR,
        # bwrap builds the root on a writable tmpfs; freeze it once the layout exists.
        "--remount-ro", "/",
        "--remount-ro", "/dev",
    ]  # fmt: skip
    return args


@functools.cache
def _read_only_layout() -> tuple[tuple[str, str, str], ...]:
    """(``ro-bind`` | ``symlink``, source, target) for what Python needs to start.

    Only the system directories and this interpreter's prefixes are visible, not the
    service's source tree or home directory. Directories are bound at their real path;
    every symlink on the way to them (``/bin -> usr/bin``, a venv's parent) is recreated,
    so the paths the interpreter knows itself by resolve inside as they do outside.
    """
    pending = [*_SYSTEM_PATHS, sys.prefix, sys.base_prefix, sys.exec_prefix]
    pending += [sys.base_exec_prefix, str(Path(sys.executable).resolve().parent.parent)]
    pending += [sysconfig.get_paths()[key] for key in ("purelib", "platlib", "stdlib")]
    # A venv's python is often a chain of symlinks (venv -> shim dir -> real binary):
    # every directory on the chain must exist inside for the venv path to resolve.
    exe = Path(sys.executable)
    for _ in range(40):
        if not exe.is_symlink():
            break
        exe = exe.parent / exe.readlink()
        pending.append(str(exe.parent))
    links: dict[str, str] = {}
    real: set[str] = set()
    while pending:
        path = Path(os.path.normpath(pending.pop()))
        if not path.is_absolute() or not path.exists():
            continue
        current = Path("/")
        for part in path.parts[1:]:
            current = current / part
            if current.is_symlink() and str(current) not in links:
                text = str(current.readlink())
                links[str(current)] = text
                pending.append(str(current.parent / text))
        real.add(os.path.realpath(path))
    binds = [p for p in sorted(real) if not any(_inside(p, other) for other in real)]
    layout = [("ro-bind", path, path) for path in binds]
    # A link inside a bound directory is already there, as the host has it.
    layout += [
        ("symlink", text, link)
        for link, text in sorted(links.items())
        if not any(_inside(link, b) or link == b for b in binds)
    ]
    return tuple(layout)


def _inside(path: str, directory: str) -> bool:
    """Strictly below ``directory``."""
    return path != directory and path.startswith(directory.rstrip("/") + "/")
