"""Run strategy code in confined processes: a zygote per sandbox, a fresh process per run.

A ``Sandbox`` starts one confined runner (``sandbox_runner.py``, the zygote), which
imports numpy and pandas once and then forks a fresh process for every run. A job is one
strategy run on one or more sets of bars (the look-ahead check's variants, the full data
last); each run's process holds only the bars it was given, in a memfd, and hands its
features and signal back in another. Nothing the service reads back is trusted
(``untrusted``); the service, not the sandbox, compares the runs (``lookahead``). Three
kinds of containment (``docs/security.md`` has what each stops):

``bubblewrap`` (the strong one, required in production)
    ``bwrap`` with every namespace unshared (network, PID, IPC, UTS, user) and a root
    holding only read-only binds of the system and Python directories. The zygote keeps
    CAP_SYS_ADMIN and CAP_SETPCAP of its user namespace, to give each run namespaces of
    its own; every run drops them before the strategy starts.
``namespaces`` (the fallback)
    ``unshare`` puts the zygote in fresh mount, network, PID, IPC and UTS namespaces
    (and a user namespace when the service is not root); the zygote builds the same
    empty root as bubblewrap's and pivots into it. Runs drop to ``UNPRIVILEGED_UID``
    (service running as root) or give up every capability.
``rlimits`` (only when asked for by name)
    Resource limits, the seccomp filter and an empty environment, nothing else: the
    filesystem and network are the service user's, and runs are not isolated from
    each other, so the look-ahead check proves nothing there. Never chosen by ``auto``.

Each run's process is the init of a PID namespace of its own, with private mount and IPC
namespaces, a tmpfs of ``disk_bytes`` as its work directory, RLIMIT_CPU (what is left of
the job's CPU), RLIMIT_AS, RLIMIT_FSIZE, RLIMIT_NOFILE and RLIMIT_CORE, and a seccomp
filter when libseccomp is present (no sockets, no new processes). When it ends, all it
started ends with it. The service kills the whole sandbox at the wall-clock limit, on
any other deadline, and on anything it cannot read back; the next job gets a new one.
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
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from . import sandbox_runner as runner
from . import untrusted
from .errors import (
    SandboxError,
    SandboxLimitExceeded,
    SandboxUnavailable,
    StrategyRuntimeError,
    UnreadableOutput,
)
from .untrusted import Deadline, Exited
from .validate import validate_strategy

SandboxKind = Literal["bubblewrap", "namespaces", "rlimits"]
SandboxMode = Literal["auto", "bubblewrap", "namespaces", "rlimits"]
STRONG_SANDBOX: SandboxKind = "bubblewrap"

RUNNER_PATH = Path(runner.__file__)
# nobody: the uid the namespaces sandbox runs strategies as when the service is root.
UNPRIVILEGED_UID = 65534
# Measured: numpy + pandas + pyarrow start in 384 MiB of address space, not in 320.
MIN_MEMORY_BYTES = 384 << 20
# The zygote imports pandas and warms it up: about a second of CPU, much longer on a
# busy machine. Not part of any job's wall-clock limit.
START_SECONDS = 120.0
# How long a killed or closed sandbox may take to be gone.
END_SECONDS = 10.0
ALL_BARS = "on all bars"
_SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc/ld.so.cache")
_NUMERIC_KINDS = "biuf"
T = TypeVar("T")


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one job. The defaults fit a few thousand daily bars with room to spare.

    ``cpu_seconds`` and ``wall_seconds`` are for the whole job (all its runs together);
    ``memory_bytes`` (address space) and ``disk_bytes`` (the work directory) for each run.
    """

    cpu_seconds: int = 20
    memory_bytes: int = 1 << 30
    wall_seconds: float = 30.0
    disk_bytes: int = 32 << 20

    def __post_init__(self) -> None:
        if self.cpu_seconds < 1:
            raise ValueError("cpu_seconds must be at least 1 (RLIMIT_CPU counts whole seconds)")
        if self.memory_bytes < MIN_MEMORY_BYTES:
            raise ValueError(f"memory_bytes below {MIN_MEMORY_BYTES >> 20} MiB cannot even import pandas")
        if not (math.isfinite(self.wall_seconds) and self.wall_seconds > 0):
            raise ValueError("wall_seconds must be positive and finite")
        if self.disk_bytes < 1 << 20:
            raise ValueError("disk_bytes must be at least 1 MiB")


DEFAULT_LIMITS = SandboxLimits()


@dataclass(frozen=True, eq=False)
class SandboxResult:
    """Outputs of one job.

    ``outputs`` holds each run's features and ``signal`` column, in the order of the
    runs, indexed like their bars; ``frame`` is the last (the full data). ``guards``
    lists what every run had in force beyond the kind itself (``empty root``,
    ``unprivileged``, ``seccomp``). ``cpu_seconds`` is the CPU the sandbox used for the
    job: every run's process and the zygote's part, plus the zygote's start-up when it
    was started for this job; ``job_cpu_seconds`` is the same without the start-up.
    """

    sandbox: SandboxKind
    guards: tuple[str, ...]
    outputs: tuple[pd.DataFrame, ...]
    wall_seconds: float
    cpu_seconds: float
    job_cpu_seconds: float
    peak_memory_bytes: int

    @property
    def frame(self) -> pd.DataFrame:
        return self.outputs[-1]

    @property
    def runs(self) -> int:
        return len(self.outputs)

    @property
    def label(self) -> str:
        """The kind and its extra guards, e.g. ``bubblewrap+seccomp``: what a report names."""
        return "+".join([self.sandbox, *(g for g in self.guards if g == "seccomp")])


@dataclass(frozen=True)
class SandboxProbe:
    """What code inside the sandbox could reach, as a run saw it."""

    sandbox: SandboxKind
    guards: tuple[str, ...]
    uid: int
    interfaces: tuple[str, ...]
    connect_error: str | None
    writable: tuple[str, ...]
    readable: tuple[str, ...]
    processes: tuple[int, ...]
    workdir: str
    environment: tuple[str, ...]

    @property
    def network_isolated(self) -> bool:
        """Only loopback exists and an outbound connection failed."""
        return set(self.interfaces) <= {"lo"} and self.connect_error is not None

    @property
    def writable_outside_workdir(self) -> tuple[str, ...]:
        return tuple(path for path in self.writable if path != self.workdir)


@functools.cache
def bubblewrap_available() -> bool:
    """Whether a bubblewrap sandbox with our exact options starts and confines a run here.

    Probed once per process with the real mount layout, because ``bwrap`` being
    installed says nothing about user namespaces or /proc mounts being permitted.
    """
    return _bwrap_executable() is not None and _trial("bubblewrap")


@functools.cache
def namespaces_available() -> bool:
    """Whether the fallback can create its namespaces, its root and a confined run here."""
    return _unshare_executable() is not None and _trial("namespaces")


def _trial(kind: SandboxKind) -> bool:
    try:
        Sandbox(kind, SandboxLimits(), ahead=False).probe()
    except (OSError, SandboxError, SandboxLimitExceeded, UnreadableOutput):
        return False
    return True


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
    mode: SandboxMode = "auto",
    validate: bool = True,
) -> SandboxResult:
    """Run the entry points of ``source`` once on ``bars`` in a sandbox started for it.

    ``source`` is validated again first: the sandbox never executes code that has not
    passed the static rules (``validate=False`` exists for the escape-corpus tests, which
    measure the sandbox alone). A service running many strategies keeps a ``Sandbox``.
    """
    sandbox = Sandbox(resolve_sandbox(mode), limits, ahead=False)
    return sandbox.run(source, [(ALL_BARS, bars)], validate=validate)


def probe_sandbox(*, limits: SandboxLimits = DEFAULT_LIMITS, mode: SandboxMode = "auto") -> SandboxProbe:
    """Ask a run what it can reach; for health checks and the sandbox's own tests."""
    kind = resolve_sandbox(mode)
    sandbox = Sandbox(kind, limits, ahead=False)
    report, guards = sandbox.probe()
    return SandboxProbe(
        sandbox=kind,
        guards=guards,
        uid=int(report["uid"]),
        interfaces=tuple(report["interfaces"]),
        connect_error=report["connect_error"],
        writable=tuple(report["writable"]),
        readable=tuple(report["readable"]),
        processes=tuple(report["processes"]),
        workdir=report["workdir"],
        environment=tuple(report["environment"]),
    )


def _check_bars(bars: pd.DataFrame) -> None:
    if not isinstance(bars, pd.DataFrame) or not isinstance(bars.index, pd.DatetimeIndex):
        raise ValueError("bars must be a DataFrame with a DatetimeIndex")
    if bars.index.tz is not None:
        raise ValueError("bars must have dates without a time zone")
    if len(bars) == 0 or "close" not in bars.columns:
        raise ValueError("bars must be non-empty and have a close column")
    if not (bars.index.is_monotonic_increasing and bars.index.is_unique):
        raise ValueError("bars must be in date order without repeated dates")
    if not all(isinstance(column, str) for column in bars.columns.tolist()) or not bars.columns.is_unique:
        raise ValueError("bar column names must be unique strings")
    if any(dtype.kind not in _NUMERIC_KINDS for dtype in bars.dtypes.tolist()):
        raise ValueError("bar columns must be numeric")


class Sandbox:
    """Runs jobs in one kind of sandbox, up to ``size`` at once, each through a zygote kept
    between jobs (a warm pool: one per job that may run at once).

    Every run still gets a fresh process, namespaces and work directory; only the
    zygote's start-up (interpreter, imports, confinement: about a second of CPU, most of
    it ``import pandas``) is shared, paid once per zygote ahead of the first job
    (``ahead``) and again only after a job that had to kill its sandbox. A job never
    waits for another's zygote: the codegen worker runs an express job beside a normal
    one (docs/decisions/0023). With ``ahead=False`` each job starts a zygote and ends it.
    Thread-safe.
    """

    def __init__(
        self, kind: SandboxKind, limits: SandboxLimits = DEFAULT_LIMITS, *, ahead: bool = True, size: int = 1
    ) -> None:
        if size < 1:
            raise ValueError("a sandbox runs at least one job at a time")
        self.kind = kind
        self.limits = limits
        self.ahead = ahead
        self.size = size
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()  # guards the idle zygotes and ``_closed``
        self._idle: list[_Zygote] = []
        self._closed = False
        if ahead:
            self._idle = [_Zygote.start(kind, limits) for _ in range(size)]
            atexit.register(self.close)

    def run(self, source: str, runs: Sequence[tuple[str, pd.DataFrame]], *, validate: bool = True) -> SandboxResult:
        """Run ``source`` once on each ``(label, bars)`` of ``runs``, each in a process of
        its own; raise the first run's failure (its label says which run)."""
        if validate:
            validate_strategy(source)
        if not runs:
            raise ValueError("a job needs at least one set of bars")
        for _, bars in runs:
            _check_bars(bars)
        return self._with_zygote(lambda zygote: zygote.job(source, runs))

    def probe(self) -> tuple[dict[str, Any], tuple[str, ...]]:
        """What a run can reach (see ``sandbox_runner.probe``), and the guards in force."""
        return self._with_zygote(lambda zygote: (zygote.probe(), zygote.guards))

    def _with_zygote(self, work: Callable[[_Zygote], T]) -> T:
        with self._slots:
            with self._lock:
                zygote = self._idle.pop() if self._idle else None
            if zygote is None or zygote.process.poll() is not None:
                if zygote is not None:  # died while waiting (killed, out of memory): a fresh one
                    zygote.close()
                zygote = _Zygote.start(self.kind, self.limits)
            try:
                zygote.wait_ready()
                return work(zygote)
            finally:
                self._put_back(zygote)

    def _put_back(self, zygote: _Zygote) -> None:
        """Keep a zygote that is still sound for the next job; replace one that is not."""
        kept: _Zygote | None = zygote
        if not self.ahead or zygote.broken:
            zygote.close()
            kept = None
            if self.ahead:
                with contextlib.suppress(OSError):  # the next job tries again
                    kept = _Zygote.start(self.kind, self.limits)
        if kept is None:
            return
        with self._lock:
            if not self._closed:
                self._idle.append(kept)
                return
        kept.close()

    def zygotes(self) -> list[_Zygote]:
        """The idle zygotes (for tests and probes)."""
        with self._lock:
            return list(self._idle)

    def close(self) -> None:
        """End the idle zygotes; one in use ends when its job does."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for zygote in idle:
            zygote.close()


@dataclass(eq=False)
class _Zygote:
    """The service's end of one confined zygote: its process, control socket and files."""

    kind: SandboxKind
    limits: SandboxLimits
    tmp: tempfile.TemporaryDirectory[str]
    process: subprocess.Popen[bytes]
    control: socket.socket
    guards: tuple[str, ...] = ()
    ready: bool = False
    broken: bool = False
    startup_cpu: float = 0.0
    cpu: float = 0.0
    jobs: int = 0

    @classmethod
    def start(cls, kind: SandboxKind, limits: SandboxLimits) -> _Zygote:
        """Start a zygote under ``kind``: it confines itself, imports, and says ready."""
        tmp = tempfile.TemporaryDirectory(prefix="alphasaga-codegen-")
        logs = Path(tmp.name)
        box = logs / "box"
        box.mkdir()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        request: dict[str, Any] = {
            "kind": kind,
            "memory_bytes": limits.memory_bytes,
            "disk_bytes": limits.disk_bytes,
            "control_fd": theirs.fileno(),
        }
        if kind == "namespaces":
            request["jail"] = {"uid": UNPRIVILEGED_UID if os.geteuid() == 0 else None}
            request["root"] = [list(entry) for entry in _read_only_layout()]
        (box / runner.REQUEST_FILE).write_text(json.dumps(request))
        shutil.copyfile(RUNNER_PATH, box / "runner.py")
        inner = runner.WORKDIR if kind == "bubblewrap" else str(box)
        command = [sys.executable, "-I", "-B", f"{inner}/runner.py", inner]
        if kind == "bubblewrap":
            command = [*_bubblewrap_prefix(box), *command]
        elif kind == "namespaces":
            command = [*_unshare_prefix(), *command]
        try:
            with (logs / "stdout.txt").open("wb") as out, (logs / "stderr.txt").open("wb") as err:
                process = subprocess.Popen(
                    command,
                    cwd=box,
                    env=_environment(runner.WORKDIR if kind != "rlimits" else str(box)),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    pass_fds=(theirs.fileno(),),
                    start_new_session=True,
                )
        except OSError:
            ours.close()
            tmp.cleanup()
            raise
        finally:
            theirs.close()
        return cls(kind=kind, limits=limits, tmp=tmp, process=process, control=ours)

    def wait_ready(self) -> None:
        """Wait for the zygote's ``ready``; a zygote that does not get there is killed."""
        if self.ready:
            return
        message = self._reply(Deadline(START_SECONDS), lambda: SandboxError("the sandbox did not start in time"))
        if message.get("state") != "ready":
            self.kill()
            raise SandboxError(f"the sandbox did not start: {str(message.get('detail'))[:300]}; {self.log_tail()}")
        self.guards = tuple(str(guard) for guard in message.get("guards", []))[:8]
        self.startup_cpu = self.cpu = untrusted.number(message.get("cpu_seconds"))
        self.ready = True

    def job(self, source: str, runs: Sequence[tuple[str, pd.DataFrame]]) -> SandboxResult:
        limits = self.limits
        deadline = Deadline(limits.wall_seconds)
        begun, zygote_before = time.perf_counter(), self.cpu
        self._load(source, deadline)
        outputs, used, peak = [], 0.0, 0
        for label, bars in runs:
            cpu_limit = math.ceil(limits.cpu_seconds - used)
            if cpu_limit < 1:
                raise SandboxLimitExceeded("cpu_time", f"used more than {limits.cpu_seconds} s of CPU ({label})")
            exited, data = self._run("strategy", bars, cpu_limit, deadline, label)
            used += exited.cpu_seconds
            peak = max(peak, exited.peak_rss_bytes)
            untrusted.raise_for_exit(exited, data, label, cpu_limit)
            outputs.append(untrusted.output_frame(data, bars.index, label, cpu_limit))
        job_cpu = used + max(0.0, self.cpu - zygote_before)
        startup = self.startup_cpu if self.jobs == 0 else 0.0
        self.jobs += 1
        return SandboxResult(
            sandbox=self.kind,
            guards=self.guards,
            outputs=tuple(outputs),
            wall_seconds=time.perf_counter() - begun,
            cpu_seconds=job_cpu + startup,
            job_cpu_seconds=job_cpu,
            peak_memory_bytes=peak,
        )

    def probe(self) -> dict[str, Any]:
        deadline = Deadline(self.limits.wall_seconds)
        exited, data = self._run("probe", None, self.limits.cpu_seconds, deadline, "the probe")
        untrusted.raise_for_exit(exited, data, "the probe", self.limits.cpu_seconds)
        header, _ = untrusted.split_frame(data)
        if header.get("status") != "ok" or not isinstance(header.get("probe"), dict):
            untrusted.raise_for_status(header, "the probe", self.limits.cpu_seconds)
        report: dict[str, Any] = header["probe"]
        return report

    def _load(self, source: str, deadline: Deadline) -> None:
        """Hand the job's source to the zygote, which compiles it once."""
        source_fd = os.memfd_create("strategy", os.MFD_CLOEXEC)
        try:
            _write_all(source_fd, source.encode("utf-8"))
            self._send({"op": "source"}, [source_fd], deadline)
        finally:
            os.close(source_fd)
        message = self._reply(deadline, lambda: UnreadableOutput("the sandbox did not take the strategy in time"))
        if message.get("state") == "refused":
            raise StrategyRuntimeError(f"the strategy does not compile: {str(message.get('detail'))[:300]}")
        if message.get("state") != "loaded":
            self.kill()
            raise UnreadableOutput("the sandbox answered the strategy with something else than loaded")

    def _run(
        self, task: str, bars: pd.DataFrame | None, cpu_limit: int, deadline: Deadline, label: str
    ) -> tuple[Exited, bytes]:
        """One run in a fresh process: its bars in one memfd, its output in another."""
        bars_fd = os.memfd_create("bars", os.MFD_CLOEXEC)
        output_fd = os.memfd_create("output", os.MFD_CLOEXEC)
        try:
            if bars is not None:
                _write_all(bars_fd, runner.encode_frame(bars))
            self._send({"op": "run", "task": task, "cpu_seconds": cpu_limit}, [bars_fd, output_fd], deadline)
            try:
                exited = Exited.parse(self._reply(deadline, functools.partial(self._too_long, label)))
            except UnreadableOutput:
                self.kill()
                raise
            self.cpu = exited.zygote_cpu_seconds
            rows = 0 if bars is None else len(bars)
            cap = untrusted.HEADER_BYTES + 8 * rows * (untrusted.MAX_FEATURES + 2)
            return exited, untrusted.read_regular_fd(output_fd, cap)
        finally:
            os.close(bars_fd)
            os.close(output_fd)

    def _too_long(self, label: str) -> SandboxLimitExceeded:
        seconds = self.limits.wall_seconds
        detail = f"still running after {seconds:g} s ({label}); the sandbox was killed"
        return SandboxLimitExceeded("wall_clock", detail)

    def _send(self, message: dict[str, Any], fds: list[int], deadline: Deadline) -> None:
        try:
            self.control.settimeout(max(deadline.remaining(), 0.001))
            socket.send_fds(self.control, [json.dumps(message).encode()], fds)
        except OSError as exc:  # the zygote is gone, or its socket is full
            self.kill()
            raise SandboxError(f"cannot reach the sandbox: {exc}; {self.log_tail()}") from None

    def _reply(self, deadline: Deadline, on_timeout: Callable[[], Exception]) -> dict[str, Any]:
        """The zygote's next message; any failure to get one kills the sandbox."""
        try:
            message = untrusted.receive(self.control, deadline)
        except TimeoutError:
            self.kill()
            raise on_timeout() from None
        except UnreadableOutput:
            self.kill()
            raise
        if message is None:
            self.kill()
            raise SandboxError(f"the sandbox's runner ended unexpectedly; {self.log_tail()}")
        return message

    def log_tail(self) -> str:
        """The end of the zygote's stderr, read as any file from the sandbox is."""
        try:
            data = untrusted.read_regular_file(Path(self.tmp.name) / "stderr.txt", untrusted.LOG_TAIL_BYTES)
        except (OSError, UnreadableOutput) as exc:
            return f"(no log: {exc})"
        return data.decode(errors="replace").strip() or "(its log is empty)"

    def kill(self) -> None:
        """End the sandbox now: its process group, and with it every process inside."""
        self.broken = True
        _kill_group(self.process.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=END_SECONDS)
        self.control.close()

    def close(self) -> None:
        """End it: closing the socket lets the zygote exit; the group is killed anyway."""
        self.control.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=END_SECONDS)
        self.kill()
        self.tmp.cleanup()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@functools.cache
def _unshare_executable() -> str | None:
    return shutil.which("unshare")


def _unshare_prefix() -> list[str]:
    """Fresh namespaces for the zygote; a user namespace only when we are not root. It
    runs in a session of its own (so that its group can be killed on stop), which also
    takes it out of the service's: ``setpriv --pdeathsig`` makes it die with the service,
    killed with -9 or not, and ``--kill-child`` takes the zygote with it."""
    setpriv = shutil.which("setpriv")
    args = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
    args += [_unshare_executable() or "unshare", "--mount", "--net", "--pid", "--ipc", "--uts"]
    args += ["--fork", "--kill-child", "--mount-proc"]
    if os.geteuid() != 0:
        args += ["--user", "--map-root-user"]
    return args


def _kill_group(pgid: int) -> None:
    """SIGKILL the session we started; under bubblewrap the sandbox dies with bwrap."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _environment(workdir: str) -> dict[str, str]:
    """The zygote's whole environment: nothing inherited, one thread per library."""
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
    """``bwrap`` options: fresh namespaces, read-only system, the box read-only at
    ``/sandbox`` (each run mounts its own tmpfs over it)."""
    args = [
        _bwrap_executable() or "bwrap",
        "--unshare-all",
        "--unshare-user",
        "--die-with-parent",
        "--new-session",
        # The zygote needs these two in its user namespace to give each run its own
        # namespaces and to drop the bounding set there; runs keep nothing.
        "--cap-drop", "ALL",
        "--cap-add", "CAP_SYS_ADMIN",
        "--cap-add", "CAP_SETPCAP",
        # The zygote is uid 0 of its own user namespace (mapped to the service's uid), as
        # it is anyway when the service is root: for any other uid, bubblewrap would add a
        # second user namespace to map it, in which the zygote may not return to its PID
        # namespace (setns) after making a run's. Runs give up every capability.
        "--uid", "0",
        "--gid", "0",
    ]  # fmt: skip
    for kind, source, target in _read_only_layout():
        args += [f"--{kind}", source, target]
    args += [
        "--proc", "/proc",
        "--dev", "/dev",
        "--ro-bind", str(box), runner.WORKDIR,
        "--chdir", runner.WORKDIR,
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
    Both confined kinds build their root from it.
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
