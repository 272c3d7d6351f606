"""The fixed program that runs a strategy inside the sandbox.

``sandbox.run_strategy`` copies this file into a fresh work directory next to
``strategy.py``, ``bars.parquet`` and ``request.json`` and starts it as
``python -I -B runner.py WORKDIR``. It is the only trusted code in the sandboxed process.

In order, before any strategy code runs:

1. It lowers its own resource limits, so they cover the imports of numpy and pandas
   and everything the strategy does (that also spares the parent a ``preexec_fn``,
   which is unsafe in a multi-threaded service).
2. In the ``namespaces`` sandbox (``request["jail"]``) it is root of fresh mount, network,
   PID, IPC and UTS namespaces: it makes every mount read-only except the work
   directory, imports what it needs, and gives up its privileges for good (a dedicated
   unprivileged uid when the service runs as root; otherwise every capability of the
   user namespace).
3. It installs a seccomp filter when ``pyseccomp`` and libseccomp are present: no
   sockets, no new processes (threads stay allowed), no mount, ptrace, namespace, key
   or kernel-module calls.

Then it runs the look-ahead variants (truncated bars, and bars whose future is
mirrored), the full data last, each on a fresh module object and fresh copies of the
bars, compares every variant with the full run, and writes ``result.parquet``
(features plus ``signal`` on the full data) and ``status.json``.

Only the standard library, numpy, pandas, pyarrow and pyseccomp are imported here: the
sandbox cannot see this package.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import resource
import signal
import sys
import time
import traceback
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

REQUEST_FILE = "request.json"
JOB_FILE = "job.json"
STATUS_FILE = "status.json"
STRATEGY_FILE = "strategy.py"
BARS_FILE = "bars.parquet"
RESULT_FILE = "result.parquet"
SIGNAL_COLUMN = "signal"
PRICE_COLUMNS = ("open", "high", "low", "close")
OUTPUT_FILE_BYTES = 64 << 20
OPEN_FILES = 256
TRACEBACK_CHARS = 4000
DETAIL_CHARS = 1000
# RFC 5737 documentation address: never routed, so probing it sends nothing anywhere.
PROBE_ADDRESS = ("192.0.2.1", 9)

# <linux/mount.h>, <linux/prctl.h>, <linux/capability.h>, <linux/sched.h>
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME, MS_STRICTATIME = 1024, 2048, 1 << 21, 1 << 24
_MOUNT_FLAGS = {
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
    "strictatime": MS_STRICTATIME,
}
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP = 1, 38, 24
CAPABILITY_VERSION_3 = 0x20080522
CLONE_THREAD = 0x00010000
DENIED_SYSCALLS = (
    # Network: the namespaces already leave nothing to reach; this also shuts out
    # Unix sockets on the host's filesystem.
    "socket", "socketpair",
    # New processes (fork bombs, shells); threads go through clone with CLONE_THREAD.
    "fork", "vfork", "execve", "execveat",
    # Other processes, the kernel, and ways out of the namespaces.
    "ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount2", "pivot_root",
    "chroot", "unshare", "setns", "keyctl", "add_key", "request_key", "bpf",
    "perf_event_open", "userfaultfd", "kexec_load", "init_module", "finit_module",
    "delete_module", "reboot", "swapon", "swapoff", "acct", "name_to_handle_at",
    "open_by_handle_at", "io_uring_setup", "fsopen", "fsmount", "move_mount", "open_tree",
    "mount_setattr",
)  # fmt: skip


class OutputProblem(Exception):
    """An entry point returned something that breaks the contract."""


class CpuLimit(BaseException):
    """RLIMIT_CPU's soft limit was reached (SIGXCPU); the hard limit kills a second later."""


def _on_sigxcpu(signum: int, frame: object) -> None:
    raise CpuLimit


def main(argv: list[str]) -> int:
    """Confine itself as ``request.json`` in ``argv[1]`` says, wait for a line on stdin,
    then run ``job.json`` and report through ``status.json``.

    The wait lets the parent start a runner before it has a job for it: start-up and
    imports are then paid while the previous job is still going. End of input without a
    line means the runner is not needed: it exits without a status.
    """
    workdir = Path(argv[1])
    request = json.loads((workdir / REQUEST_FILE).read_text())
    apply_limits(int(request["cpu_seconds"]), int(request["memory_bytes"]))
    # Reported in status.json rather than by the exit code, which unshare loses.
    signal.signal(signal.SIGXCPU, _on_sigxcpu)
    try:
        guards = confine(workdir, request)
        if not sys.stdin.readline():
            return 0
        at_go = _cpu_seconds()
        status = handle(workdir, json.loads((workdir / JOB_FILE).read_text()))
        status["guards"] = guards
        status["job_cpu_seconds"] = _cpu_seconds() - at_go
    except MemoryError:
        status = {"status": "memory", "detail": "MemoryError: the memory limit was reached"}
    except CpuLimit:
        status = {"status": "cpu", "detail": f"used more than {request['cpu_seconds']} s of CPU"}
    except Exception as exc:
        # Failures outside the strategy's own calls are the sandbox's, not the strategy's.
        status = {"status": "internal", "detail": f"{type(exc).__name__}: {exc}"}
    status["cpu_seconds"] = _cpu_seconds()
    status["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    write_status(workdir, status)
    return 0 if status["status"] == "ok" else 1


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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


# --------------------------------------------------------------------------- confinement


def confine(workdir: Path, request: dict[str, Any]) -> list[str]:
    """Steps 2 and 3 of the module docstring; returns the guards now in force."""
    guards: list[str] = []
    jail = request.get("jail")
    if jail is not None:
        read_only_except(workdir)
        guards.append("read-only mounts")
    # Imported while files can still be read as the starting user: after the drop an
    # interpreter under a private home directory could no longer load them.
    import encodings.idna  # noqa: F401  # socket's host names, in the probe
    import io
    import socket  # noqa: F401

    import pandas as pd  # type: ignore[import-untyped, unused-ignore]

    buffer = io.BytesIO()
    pd.DataFrame({"x": [1.0]}, index=pd.DatetimeIndex(["2000-01-03"])).to_parquet(buffer)
    pd.read_parquet(io.BytesIO(buffer.getvalue()))
    seccomp = load_seccomp() if request.get("seccomp", True) else None
    if jail is not None:
        drop_privileges(jail.get("uid"))
        guards.append("unprivileged")
    if seccomp is not None:
        install_seccomp(seccomp)
        guards.append("seccomp")
    return guards


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def read_only_except(workdir: Path) -> None:
    """Every mount read-only, in this mount namespace only, but ``workdir`` itself."""
    libc = _libc()
    mount = libc.mount
    mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    _check(mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make mounts private")
    target = os.fsencode(workdir)
    # A mount of its own, so that it stays writable when the mount it sits on does not.
    _check(mount(target, target, None, MS_BIND, None), f"bind {workdir}")
    for point, options in _mounts():
        if point == str(workdir):
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        flags |= sum(_MOUNT_FLAGS.get(option, 0) for option in options)
        _check(mount(None, os.fsencode(point), None, flags, None), f"make {point} read-only")


def _mounts() -> list[tuple[str, set[str]]]:
    """(mount point, per-mount options) from /proc/self/mountinfo, decoded."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        point = fields[4].encode().decode("unicode_escape")  # \040 for a space
        found.append((point, set(fields[5].split(","))))
    return found


def drop_privileges(uid: int | None) -> None:
    """For good: setuid to ``uid`` when started as real root, else drop every capability."""
    libc = _libc()
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)  # clears every capability
        # A change of credentials also clears the death signal that unshare --kill-child
        # set: arm it again, so that the runner dies with unshare (and unshare with the
        # service) instead of running on with nobody to enforce its wall-clock limit.
        _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "set the parent-death signal")
    else:
        for capability in range(64):
            if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0 and ctypes.get_errno() == errno.EINVAL:
                break
        header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
        data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable (two words each)
        _check(libc.capset(header, data), "drop capabilities")
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "set no_new_privs")


def load_seccomp() -> ModuleType | None:
    """pyseccomp, loaded while its files and libseccomp are readable; None when absent."""
    try:
        import pyseccomp  # type: ignore[import-untyped, unused-ignore]
    except (ImportError, OSError, RuntimeError):
        return None
    module: ModuleType = pyseccomp
    return module


def install_seccomp(seccomp: Any) -> None:
    """The seccomp filter of the module docstring."""
    denied = seccomp.ERRNO(errno.EPERM)
    policy = seccomp.SyscallFilter(seccomp.ALLOW)
    for name in DENIED_SYSCALLS:
        # Skipped when it is not a system call on this architecture.
        with contextlib.suppress(RuntimeError, ValueError, OSError):
            policy.add_rule(denied, name)
    policy.add_rule(denied, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_THREAD, 0))
    # clone3 keeps its flags behind a pointer the filter cannot read; glibc falls back
    # to clone when it is missing.
    policy.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    policy.load()


# --------------------------------------------------------------------------- the runs


def handle(workdir: Path, request: dict[str, Any]) -> dict[str, Any]:
    """Dispatch on the request's command."""
    if request["command"] == "probe":
        return {"status": "ok", "probe": probe(workdir)}
    return run(workdir, request)


def run(workdir: Path, request: dict[str, Any]) -> dict[str, Any]:
    """Variants first, the full data last; then compare each variant with it."""
    import pandas as pd  # type: ignore[import-untyped, unused-ignore]

    bars = pd.read_parquet(workdir / BARS_FILE)
    lookahead = request.get("lookahead") or {}
    variants = [("truncated", int(t)) for t in sorted(lookahead.get("truncations", []))]
    variants += [("mirrored", int(c)) for c in sorted(lookahead.get("mirrors", []))]
    outputs = []
    started = time.perf_counter()
    code = compile_strategy(workdir / STRATEGY_FILE)
    for kind, cut in [*variants, ("full", len(bars) - 1)]:
        try:
            frame = run_once(code, variant_bars(bars, kind, cut))
        except OutputProblem as exc:
            where = "on all bars" if kind == "full" else f"on {kind} bars, cut after bar {cut}"
            return {"status": "output", "detail": f"{exc} ({where})"[:DETAIL_CHARS]}
        except (MemoryError, CpuLimit):
            raise
        except BaseException as exc:
            return {
                "status": "error",
                "detail": f"{type(exc).__name__}: {exc}"[:DETAIL_CHARS],
                "traceback": "".join(traceback.format_exception(exc))[-TRACEBACK_CHARS:],
            }
        outputs.append((kind, cut, frame))
    seconds = time.perf_counter() - started
    full = outputs.pop()[2]
    full.to_parquet(workdir / RESULT_FILE)
    rtol, atol = float(lookahead.get("rtol", 1e-9)), float(lookahead.get("atol", 1e-12))
    mismatches = [m for kind, cut, frame in outputs if (m := compare(full, frame, kind, cut, rtol, atol))]
    return {
        "status": "ok",
        "compute_seconds": seconds,
        "runs": len(outputs) + 1,
        "values_compared": sum(min(len(frame), cut + 1) * frame.shape[1] for _, cut, frame in outputs),
        "mismatch": min(mismatches, key=lambda m: (m["row"], m["cut"])) if mismatches else None,
    }


def variant_bars(bars: Any, kind: str, cut: int) -> Any:
    """The bars a variant sees: the first ``cut + 1`` bars, or all with a mirrored future.

    Mirrored: after the cut every price is scaled so that the close becomes
    ``close[cut]**2 / close[t]`` (a rise becomes a fall of the same size, intrabar shape
    kept) and the volume changes too; the dates stay, so the bars' length does not tell.
    """
    if kind == "truncated":
        return bars.iloc[: cut + 1].copy()
    out = bars.copy()
    if kind == "full":
        return out
    close = out["close"].to_numpy(dtype="float64")
    factor = (close[cut] / close[cut + 1 :]) ** 2
    for column in PRICE_COLUMNS:
        if column in out.columns:
            out.iloc[cut + 1 :, out.columns.get_loc(column)] = out[column].to_numpy(dtype="float64")[cut + 1 :] * factor
    if "volume" in out.columns:
        out.iloc[cut + 1 :, out.columns.get_loc("volume")] = (
            out["volume"].to_numpy(dtype="float64")[cut + 1 :] * 1.5 + 1
        )
    return out


def compare(full: Any, frame: Any, kind: str, cut: int, rtol: float, atol: float) -> dict[str, Any] | None:
    """The first row up to ``cut`` where ``frame`` differs from ``full``, if any.

    NaN equals NaN; other values must agree within ``rtol``/``atol``, which absorbs
    nothing but floating-point noise.
    """
    import numpy as np

    if list(frame.columns) != list(full.columns):
        return {"kind": kind, "cut": cut, "row": 0, "column": None, "got": str(list(frame.columns)),
                "expected": str(list(full.columns))}  # fmt: skip
    got = frame.to_numpy(dtype="float64")[: cut + 1]
    expected = full.to_numpy(dtype="float64")[: cut + 1]
    mismatch = ~np.isclose(got, expected, rtol=rtol, atol=atol, equal_nan=True)
    first: tuple[int, str] | None = None
    if mismatch.any():
        row = int(np.argmax(mismatch.any(axis=1)))
        first = (row, str(full.columns[int(np.argmax(mismatch[row]))]))
    if first is None:
        return None
    row, column = first
    return {"kind": kind, "cut": cut, "row": row, "column": column,
            "got": repr(float(frame[column].iloc[row])), "expected": repr(float(full[column].iloc[row]))}  # fmt: skip


def run_once(code: CodeType, bars: Any) -> Any:
    """Fresh module, fresh inputs: no run can see another run's objects.

    ``bars`` must be the run's own copy; compute_signal gets another one.
    """
    module = ModuleType("strategy")
    exec(code, module.__dict__)
    pristine = bars.copy()
    features = module.compute_features(bars)
    frame = checked_features(features, bars.index)
    position = module.compute_signal(pristine, features.copy())
    frame[SIGNAL_COLUMN] = checked_signal(position, bars.index)
    return frame


def compile_strategy(path: Path) -> CodeType:
    """Compiled once; each run executes it in a new module object (never in sys.modules)."""
    return compile(path.read_text(encoding="utf-8"), str(path), "exec", dont_inherit=True)


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
    """What strategy code could reach: interfaces, a socket, writable paths, the uid."""
    import socket

    report: dict[str, Any] = {"environment": sorted(os.environ), "uid": os.getuid()}
    try:
        lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
        report["interfaces"] = sorted(line.split(":")[0].strip() for line in lines)
    except OSError:
        report["interfaces"] = []
    try:
        with socket.create_connection(PROBE_ADDRESS, timeout=0.5):
            report["connect_error"] = None
    except OSError as exc:
        report["connect_error"] = f"{type(exc).__name__}: {exc}"
    writable = []
    for directory in (workdir, workdir.parent, Path(sys.prefix), Path("/tmp"), Path("/dev/shm"), Path("/var/tmp")):
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
