"""The fixed program inside the sandbox: a zygote, and one fresh process for each run.

``sandbox.Sandbox`` copies this file beside ``request.json`` into a directory of its
own and starts it, confined, as ``python -I -B runner.py BOX``. It is trusted; the
strategy code it runs is not, and nothing it reads back is trusted by the service.

The zygote (``main``), before it takes any work:

1. lowers its own resource limits; in the ``namespaces`` sandbox it also builds an empty
   root (a tmpfs holding read-only binds of the interpreter and its libraries, as
   bubblewrap does) and pivots into it, so that no file of the host is there at all;
2. imports numpy, pandas and pyseccomp, warms pandas up with a fixed computation of its
   own (never strategy code), freezes the heap for the garbage collector and makes
   itself undumpable: no process can read or write its memory through /proc;
3. says ``ready`` on the control socket, then serves ``source`` (the strategy in a
   memfd; compiled once, which executes nothing) and ``run`` (a memfd with the bars of
   one run and an empty memfd for its output), one at a time.

Each run is a child forked into a PID namespace of its own, whose init it is (whatever
it starts dies with it). Before any strategy code it unshares the mount and IPC
namespaces, mounts a fresh size-limited tmpfs as its work directory and a /proc that
shows only itself, closes every descriptor but its two memfds, gives up every privilege
for good, lowers its limits and installs the seccomp filter. Then it reads its bars,
runs the strategy once on a fresh module, writes features and signal to its output
memfd and exits. It never holds another run's bars, and it can leave nothing for the
next run: its files, processes and IPC objects end with it, and the zygote is out of
its reach. The service compares the runs; nothing in here decides whether a strategy is
acceptable.

Only the standard library, numpy, pandas and pyseccomp are imported: the sandbox cannot
see this package. ``sandbox`` imports the constants and ``encode_frame``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import gc
import json
import os
import platform
import resource
import shutil
import signal
import socket
import struct
import sys
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

REQUEST_FILE = "request.json"
WORKDIR = "/sandbox"
SIGNAL_COLUMN = "signal"
OUTPUT_FILE_BYTES = 64 << 20
OPEN_FILES = 256
TRACEBACK_CHARS = 4000
DETAIL_CHARS = 1000
MESSAGE_BYTES = 1 << 16
SOURCE_BYTES = 4 << 20
# A frame on the wire: magic, header length, JSON header, then the index (int64) and
# each column's values, in order, as raw little-endian arrays.
FRAME_MAGIC = b"ASF1"
FRAME_PREFIX = struct.Struct("<4sI")
# RFC 5737 documentation address: never routed, so probing it sends nothing anywhere.
PROBE_ADDRESS = ("192.0.2.1", 9)
# Host files and directories a probe tries to read: none may be there.
PROBE_FILES = ("/etc/passwd", "/etc/hostname", "/etc/hosts", "/etc/shadow", "/home", "/tmp", "/var")

# <linux/mount.h>, <linux/prctl.h>, <linux/capability.h>, <linux/sched.h>
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME, MS_STRICTATIME = 1024, 2048, 1 << 21, 1 << 24
MNT_DETACH = 2
# statvfs flags of a mount that a user namespace may not clear on a bind remount.
_LOCKED_FLAGS = (
    (os.ST_NOSUID, MS_NOSUID),
    (os.ST_NODEV, MS_NODEV),
    (os.ST_NOEXEC, MS_NOEXEC),
    (os.ST_NOATIME, MS_NOATIME),
    (os.ST_NODIRATIME, MS_NODIRATIME),
    (os.ST_RELATIME, MS_RELATIME),
)
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP = 1, 4, 38, 24
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
CAPABILITY_VERSION_3 = 0x20080522
CLONE_THREAD, CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWPID = 0x00010000, 0x00020000, 0x08000000, 0x20000000
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
# Device nodes a run may use, bound into the fallback's empty root.
_DEVICES = ("null", "zero", "full", "random", "urandom")
DENIED_SYSCALLS = (
    # Network: the namespaces already leave nothing to reach; this also shuts out
    # Unix sockets on the host's filesystem.
    "socket", "socketpair",
    # New processes (fork bombs, shells); threads go through clone with CLONE_THREAD.
    "fork", "vfork", "execve", "execveat",
    # Other processes, the kernel, and ways out of the namespaces.
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "mount", "umount2",
    "pivot_root", "chroot", "unshare", "setns", "keyctl", "add_key", "request_key", "bpf",
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


@dataclass
class Zygote:
    """What the zygote knows: its request, the code of the current job, its guards."""

    request: dict[str, Any]
    control: socket.socket
    guards: list[str] = field(default_factory=list)
    code: CodeType | None = None
    seccomp: bytes | None = None
    pid_namespace: int | None = None
    box: Path = Path(WORKDIR)

    @property
    def isolated(self) -> bool:
        """Runs get namespaces and a tmpfs of their own (not in the ``rlimits`` kind)."""
        return bool(self.request["kind"] != "rlimits")


def main(argv: list[str]) -> int:
    """Confine and prepare the zygote as ``request.json`` in ``argv[1]`` says, then serve
    the control socket until the service closes it."""
    box = Path(argv[1])
    request = json.loads((box / REQUEST_FILE).read_text())
    control = socket.socket(fileno=int(request["control_fd"]))
    zygote = Zygote(request=request, control=control, box=box)
    try:
        prepare(zygote)
    except Exception as exc:
        send(control, {"state": "failed", "detail": f"{type(exc).__name__}: {exc}"[:DETAIL_CHARS]})
        return 1
    send(control, {"state": "ready", "guards": zygote.guards, "cpu_seconds": _cpu_seconds()})
    serve(zygote)
    return 0


def prepare(zygote: Zygote) -> None:
    """Steps 1 and 2 of the module docstring."""
    # Nothing in here reads or writes Arrow or Parquet. Without pyarrow, pandas keeps its
    # strings as Python objects: the zygote is about half the size, so every fork and
    # every run is cheaper (a blocked import is what pandas sees when it is missing).
    sys.modules["pyarrow"] = None  # type: ignore[assignment]
    request = zygote.request
    _lower(resource.RLIMIT_AS, int(request["memory_bytes"]), int(request["memory_bytes"]))
    _lower(resource.RLIMIT_CORE, 0, 0)
    root = request.get("root")
    # Built while the host's files are still there: pyseccomp finds libseccomp through them.
    zygote.seccomp = seccomp_program() if request.get("seccomp", True) else None
    if root is not None:
        enter_empty_root(zygote.box, [tuple(entry) for entry in root])
        zygote.guards.append("empty root")
    if request.get("jail", {}).get("uid") is not None:
        zygote.guards.append("unprivileged")
    warm_up()
    if zygote.seccomp is not None:
        zygote.guards.append("seccomp")
    if zygote.isolated:
        zygote.pid_namespace = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    _check(_libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "make the zygote undumpable")
    # Objects that exist now are never collected: the collector then leaves the pages
    # each run shares with the zygote alone, instead of copying them all.
    gc.freeze()


def warm_up() -> None:
    """Import and exercise what strategies use, so that each run does not pay for pandas'
    lazy imports and caches again; a fixed computation, never the strategy's."""
    import numpy as np
    import pandas as pd  # type: ignore[import-untyped, unused-ignore]

    index = pd.DatetimeIndex(np.arange(64, dtype="int64") * 86_400_000_000_000)
    bars = decode_frame(encode_frame(pd.DataFrame({"close": np.linspace(1.0, 2.0, 64)}, index=index)))
    close = bars["close"].astype("float64")
    columns = {
        "a": close / close.rolling(8, min_periods=8).mean() - 1.0,
        "b": np.log(close).diff().rolling(4).std(),
        "c": close.diff().clip(lower=0.0).ewm(alpha=0.5, adjust=False, min_periods=4).mean(),
        "d": (close - close.shift(2)).where(close > 0.0) / close.pct_change().abs().max(),
    }
    features = pd.DataFrame(columns, index=bars.index)
    names, block = checked_features(features.copy(), bars.index)
    signal = checked_signal((features["a"] > features["b"].fillna(0.0)).astype("float64"), bars.index)
    encode_columns(bars.index, [*names, SIGNAL_COLUMN], [*block, signal])


def serve(zygote: Zygote) -> None:
    """Answer the service's requests, one at a time, until it closes the socket."""
    while True:
        data, fds, _, _ = socket.recv_fds(zygote.control, MESSAGE_BYTES, 4)
        if not data:
            return
        message = json.loads(data)
        try:
            reply = load_source(zygote, fds) if message["op"] == "source" else fork_run(zygote, message, fds)
        except OSError as exc:  # cannot fork, no memory for a namespace: the service decides
            reply = {"state": "failed", "detail": f"{type(exc).__name__}: {exc}"[:DETAIL_CHARS]}
        send(zygote.control, reply)


def send(control: socket.socket, message: dict[str, Any]) -> None:
    control.send(json.dumps(message).encode())


def load_source(zygote: Zygote, fds: list[int]) -> dict[str, Any]:
    """Compile the job's strategy once; each run executes it in a module of its own."""
    (fd,) = fds
    try:
        text = _read_all(fd, SOURCE_BYTES).decode("utf-8")
        zygote.code = compile(text, "strategy.py", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        zygote.code = None
        return {"state": "refused", "detail": f"{type(exc).__name__}: {exc}"[:DETAIL_CHARS]}
    finally:
        os.close(fd)
    return {"state": "loaded"}


def fork_run(zygote: Zygote, message: dict[str, Any], fds: list[int]) -> dict[str, Any]:
    """One run in a fresh child; report how it ended and what it used."""
    bars_fd, output_fd = fds
    workdir = Path(WORKDIR) if zygote.isolated else Path(tempfile.mkdtemp(dir=zygote.box))
    try:
        pid = _fork(zygote)
        if pid == 0:
            run_child(zygote, message, workdir, bars_fd, output_fd)
    finally:
        # The run has its own copies: the zygote never holds a run's bars or output.
        os.close(bars_fd)
        os.close(output_fd)
    _, status, usage = os.wait4(pid, 0)
    if not zygote.isolated:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "state": "exited",
        "exit": os.waitstatus_to_exitcode(status),
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss_bytes": usage.ru_maxrss * 1024,
        "zygote_cpu_seconds": _cpu_seconds(),
    }


def _fork(zygote: Zygote) -> int:
    """Fork, the child into a new PID namespace of which it is the init (when isolated)."""
    if zygote.pid_namespace is None:
        return os.fork()
    libc = _libc()
    _check(libc.unshare(CLONE_NEWPID), "new PID namespace")
    pid = -1
    try:
        pid = os.fork()
    finally:
        if pid != 0:
            # Back to our own namespace for the next child: unshare goes one level only.
            _check(libc.setns(zygote.pid_namespace, CLONE_NEWPID), "leave the run's PID namespace")
    return pid


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------- one run


def run_child(zygote: Zygote, message: dict[str, Any], workdir: Path, bars_fd: int, output_fd: int) -> None:
    """The forked child: confine, run the task, write the output, exit. Never returns."""
    try:
        confine_run(zygote, workdir, int(message["cpu_seconds"]), (bars_fd, output_fd))
    except BaseException as exc:
        _finish(output_fd, {"status": "internal", "detail": f"{type(exc).__name__}: {exc}"[:DETAIL_CHARS]})
    # The run's garbage ends with it; a collection would only copy pages of the zygote.
    gc.disable()
    try:
        if message["task"] == "probe":
            _finish(output_fd, {"status": "ok", "probe": probe(workdir)})
        assert zygote.code is not None, "no strategy loaded"
        output = run_strategy(zygote.code, decode_frame(_read_all(bars_fd, OUTPUT_FILE_BYTES)))
        os.write(output_fd, output)
        os._exit(0)
    except OutputProblem as exc:
        status = {"status": "output", "detail": str(exc)[:DETAIL_CHARS]}
    except MemoryError:
        status = {"status": "memory", "detail": "MemoryError: the memory limit was reached"}
    except CpuLimit:
        status = {"status": "cpu", "detail": "the CPU limit was reached"}
    except BaseException as exc:
        status = {
            "status": "error",
            "detail": f"{type(exc).__name__}: {exc}"[:DETAIL_CHARS],
            "traceback": "".join(traceback.format_exception(exc))[-TRACEBACK_CHARS:],
        }
    _finish(output_fd, status)


def _finish(output_fd: int, status: dict[str, Any]) -> None:
    """Write a status without data and end the run at once (threads and all)."""
    with contextlib.suppress(BaseException):
        os.lseek(output_fd, 0, os.SEEK_SET)
        os.ftruncate(output_fd, 0)
        header = json.dumps(status).encode()
        os.write(output_fd, FRAME_PREFIX.pack(FRAME_MAGIC, len(header)) + header)
    os._exit(0 if status["status"] != "internal" else 70)


def confine_run(zygote: Zygote, workdir: Path, cpu_seconds: int, keep: tuple[int, int]) -> None:
    """Everything a run does before the strategy's first line, in this order."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    _close_all_but({0, 1, 2, *keep})
    if zygote.isolated:
        uid = zygote.request.get("jail", {}).get("uid")
        private_workdir(int(zygote.request["disk_bytes"]), uid)
    os.chdir(workdir)
    drop_privileges(zygote.request.get("jail", {}).get("uid"))
    apply_limits(cpu_seconds)
    # The run is the init of its PID namespace: an init ignores signals it has no
    # handler for, so SIGXCPU needs one to be heard at all.
    signal.signal(signal.SIGXCPU, _on_sigxcpu)
    if zygote.seccomp is not None:
        install_seccomp(zygote.seccomp)


def _close_all_but(keep: set[int]) -> None:
    """Every descriptor inherited from the zygote (its control socket above all) but ``keep``."""
    low = 0
    for fd in sorted(keep):
        if low < fd:  # closerange(n, n) would close every descriptor from n on
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, resource.getrlimit(resource.RLIMIT_NOFILE)[1])


def private_workdir(disk_bytes: int, uid: int | None) -> None:
    """Mount and IPC namespaces of the run's own, a tmpfs of ``disk_bytes`` as its work
    directory (the total it can write), and a /proc of its PID namespace."""
    libc = _libc()
    _check(libc.unshare(CLONE_NEWNS | CLONE_NEWIPC), "new mount and IPC namespaces")
    _mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None, "make mounts private")
    owner = f",uid={uid},gid={uid}" if uid is not None else ""
    options = f"size={disk_bytes},nr_inodes=4096,mode=0700{owner}".encode()
    _mount(b"tmpfs", WORKDIR.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options, "mount the work directory")
    _mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None, "mount /proc")


def apply_limits(cpu_seconds: int) -> None:
    """Lower this process's limits; they can never be raised again without privileges.

    The CPU soft limit sends SIGXCPU; the hard limit one second later is SIGKILL, for
    the case where SIGXCPU is somehow ignored. The address-space limit, inherited from
    the zygote, also caps threads: each reserves its stack in it.
    """
    _lower(resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1)
    _lower(resource.RLIMIT_FSIZE, OUTPUT_FILE_BYTES, OUTPUT_FILE_BYTES)
    _lower(resource.RLIMIT_CORE, 0, 0)
    _lower(resource.RLIMIT_NOFILE, OPEN_FILES, OPEN_FILES)


def _lower(which: int, soft: int, hard: int) -> None:
    _, current_hard = resource.getrlimit(which)
    if current_hard != resource.RLIM_INFINITY:
        hard = min(hard, current_hard)
    resource.setrlimit(which, (min(soft, hard), hard))


# --------------------------------------------------------------------------- confinement


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    return libc


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _mount(source: bytes | None, target: bytes, kind: bytes | None, flags: int, data: bytes | None, what: str) -> None:
    _check(_libc().mount(source, target, kind, flags, data), what)


def enter_empty_root(box: Path, layout: Sequence[tuple[str, str, str]]) -> None:
    """Make a tmpfs on ``box`` the root: read-only binds of ``layout`` (what Python needs
    to run), a few devices, /proc and the work directory's mount point; nothing else.

    The namespaces sandbox's equivalent of bubblewrap's root: after it, the host's files
    are not hidden or read-only, they are not there.
    """
    _mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None, "make mounts private")
    _mount(b"tmpfs", bytes(box), b"tmpfs", MS_NOSUID | MS_NODEV, b"size=1m,mode=0755", "mount the new root")
    for kind, source, target in layout:
        inside = box / target.lstrip("/")
        if kind == "symlink":
            _makedirs(inside.parent)
            inside.symlink_to(source)
        else:
            _bind_read_only(Path(source), inside)
    for device in _DEVICES:
        _bind_read_only(Path("/dev", device), box / "dev" / device, writable=True)
    for directory in ("proc", WORKDIR.lstrip("/")):
        _makedirs(box / directory)
    _mount(b"proc", bytes(box / "proc"), b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None, "mount /proc")
    _mount(None, bytes(box), None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None, "freeze the new root")
    os.chdir(box)
    number = _PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise OSError(errno.ENOSYS, f"pivot_root: unknown system call number on {platform.machine()}")
    _check(_libc().syscall(number, b".", b"."), "pivot_root")
    _check(_libc().umount2(b".", MNT_DETACH), "detach the host's root")
    os.chdir("/")


def _makedirs(path: Path) -> None:
    path.mkdir(mode=0o755, parents=True, exist_ok=True)


def _bind_read_only(source: Path, target: Path, *, writable: bool = False) -> None:
    """Bind ``source`` (file or directory, with what is mounted below it) at ``target``,
    read-only unless ``writable`` (devices such as /dev/null)."""
    if source.is_dir():
        _makedirs(target)
    else:
        _makedirs(target.parent)
        target.touch()
    _mount(bytes(source), bytes(target), None, MS_BIND | MS_REC, None, f"bind {source}")
    locked = os.statvfs(source).f_flag
    flags = MS_REMOUNT | MS_BIND | (0 if writable else MS_RDONLY)
    flags |= sum(mount_flag for stat_flag, mount_flag in _LOCKED_FLAGS if locked & stat_flag)
    _mount(None, bytes(target), None, flags, None, f"make {target} read-only")


def drop_privileges(uid: int | None) -> None:
    """For good: setuid to ``uid`` when started as real root, else drop every capability."""
    libc = _libc()
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)  # clears every capability
    else:
        for capability in range(64):
            if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0 and ctypes.get_errno() == errno.EINVAL:
                break
        header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
        data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable (two words each)
        _check(libc.capset(header, data), "drop capabilities")
    # A change of credentials clears the death signal: the run dies with the zygote.
    _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "set the parent-death signal")
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "set no_new_privs")


def seccomp_program() -> bytes | None:
    """The seccomp filter as a BPF program, or None when pyseccomp or libseccomp is absent.

    No sockets, no new processes (threads stay allowed), no mount, ptrace, namespace,
    key or kernel-module calls. Compiled once here; each run loads the bytes.
    """
    try:
        import pyseccomp  # type: ignore[import-untyped, unused-ignore]
    except (ImportError, OSError, RuntimeError):
        return None
    denied = pyseccomp.ERRNO(errno.EPERM)
    policy = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    for name in DENIED_SYSCALLS:
        # Skipped when it is not a system call on this architecture.
        with contextlib.suppress(RuntimeError, ValueError, OSError):
            policy.add_rule(denied, name)
    policy.add_rule(denied, "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, CLONE_THREAD, 0))
    # clone3 keeps its flags behind a pointer the filter cannot read; glibc falls back
    # to clone when it is missing.
    policy.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")
    fd = os.memfd_create("seccomp", os.MFD_CLOEXEC)
    with os.fdopen(fd, "w+b") as program:
        policy.export_bpf(program)
        program.seek(0)
        return program.read()


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install_seccomp(program: bytes) -> None:
    """Load ``program`` for this process and its threads to come (no_new_privs is set)."""
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    _check(_libc().prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "load seccomp")


# --------------------------------------------------------------------------- frames


def encode_frame(frame: Any) -> bytes:
    """``frame`` (a DatetimeIndex and numeric columns) in the wire format above."""
    names = [str(name) for name in frame.columns.tolist()]
    if frame.shape[1] and len(set(frame.dtypes.tolist())) == 1:  # one block: one copy
        return encode_columns(frame.index, names, list(frame.to_numpy().T))
    return encode_columns(frame.index, names, [frame[name].to_numpy() for name in frame.columns])


def encode_columns(index: Any, names: Sequence[str], columns: Sequence[Any]) -> bytes:
    """The wire format from an index and one array per column."""
    header = {
        "status": "ok",
        "rows": len(index),
        "index": {"name": index.name, "dtype": index.dtype.str},
        "columns": [[name, values.dtype.str] for name, values in zip(names, columns, strict=True)],
    }
    encoded = json.dumps(header).encode()
    parts = [FRAME_PREFIX.pack(FRAME_MAGIC, len(encoded)), encoded, index.asi8.tobytes()]
    parts += [values.tobytes() for values in columns]
    return b"".join(parts)


def decode_frame(data: bytes) -> Any:
    """The service's bars back from ``encode_frame`` (trusted input: the service wrote it)."""
    import numpy as np
    import pandas as pd  # type: ignore[import-untyped, unused-ignore]

    magic, length = FRAME_PREFIX.unpack_from(data)
    assert magic == FRAME_MAGIC, "not a frame"
    header = json.loads(data[FRAME_PREFIX.size : FRAME_PREFIX.size + length])
    rows, offset = int(header["rows"]), FRAME_PREFIX.size + length
    stamps = np.frombuffer(data, dtype="<i8", count=rows, offset=offset).view(header["index"]["dtype"])
    index = pd.DatetimeIndex(stamps.copy(), name=header["index"]["name"])
    offset += 8 * rows
    names = [name for name, _ in header["columns"]]
    dtypes = {dtype for _, dtype in header["columns"]}
    if len(dtypes) == 1:  # one block, built without pandas consolidating columns
        values = np.frombuffer(data, dtype=dtypes.pop(), count=rows * len(names), offset=offset)
        return pd.DataFrame(values.reshape(len(names), rows).T.copy(), index=index, columns=names, copy=False)
    columns = {}
    for name, dtype in header["columns"]:
        column = np.frombuffer(data, dtype=dtype, count=rows, offset=offset)
        columns[name] = column.copy()
        offset += column.nbytes
    return pd.DataFrame(columns, index=index)


def _read_all(fd: int, limit: int) -> bytes:
    size = os.fstat(fd).st_size
    if size > limit:
        raise ValueError(f"{size} bytes; at most {limit}")
    return os.pread(fd, size, 0)


# --------------------------------------------------------------------------- the strategy


def run_strategy(code: CodeType, bars: Any) -> bytes:
    """Fresh module, fresh inputs (compute_signal gets bars compute_features never saw);
    the features and the signal in the wire format."""
    module = ModuleType("strategy")
    exec(code, module.__dict__)
    pristine = bars.copy()
    features = module.compute_features(bars)
    names, block = checked_features(features, pristine.index)
    position = checked_signal(module.compute_signal(pristine, features.copy()), pristine.index)
    return encode_columns(pristine.index, [*names, SIGNAL_COLUMN], [*block, position])


def checked_features(features: Any, index: Any) -> tuple[list[str], Any]:
    """The feature names and values (float64, one row per feature), or ``OutputProblem``
    saying what is wrong."""
    import pandas as pd  # type: ignore[import-untyped, unused-ignore]

    if not isinstance(features, pd.DataFrame):
        raise OutputProblem(f"compute_features returned {type(features).__name__}, not DataFrame")
    if not features.index.equals(index):
        raise OutputProblem("compute_features changed the index")
    names = features.columns.tolist()
    if not all(isinstance(name, str) for name in names):
        raise OutputProblem("feature column names must be strings")
    if len(set(names)) != len(names) or SIGNAL_COLUMN in names:
        raise OutputProblem(f"feature columns must be unique and not {SIGNAL_COLUMN!r}")
    try:
        return names, features.to_numpy(dtype="float64").T
    except (TypeError, ValueError) as exc:
        raise OutputProblem(f"features must be numeric: {exc}") from None


def checked_signal(signal: Any, index: Any) -> Any:
    """The signal as float64, finite and within [-1, 1], or ``OutputProblem``."""
    import numpy as np
    import pandas as pd  # type: ignore[import-untyped, unused-ignore]

    if not isinstance(signal, pd.Series):
        raise OutputProblem(f"compute_signal returned {type(signal).__name__}, not Series")
    if not signal.index.equals(index):
        raise OutputProblem("compute_signal changed the index")
    try:
        values = signal.astype("float64").to_numpy()
    except (TypeError, ValueError) as exc:
        raise OutputProblem(f"signal must be numeric: {exc}") from None
    outside = ~((values >= -1.0) & (values <= 1.0))  # NaN is outside too
    if outside.any():
        first = int(np.argmax(outside))
        raise OutputProblem(f"signal must be finite and within [-1, 1]; got {float(values[first])!r} at {index[first]}")
    return values


def probe(workdir: Path) -> dict[str, Any]:
    """What strategy code could reach: interfaces, a socket, files, writable paths, the uid."""
    report: dict[str, Any] = {"environment": sorted(os.environ), "uid": os.getuid(), "workdir": str(workdir)}
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
    report["readable"] = [path for path in PROBE_FILES if _readable(Path(path))]
    report["processes"] = sorted(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
    report["writable"] = list(_writable(workdir))
    return report


def _readable(path: Path) -> bool:
    try:
        if path.is_dir():
            return bool(list(path.iterdir()))
        path.read_bytes()
    except OSError:
        return False
    return True


def _writable(workdir: Path) -> Iterator[str]:
    for directory in (workdir, workdir.parent, Path(sys.prefix), Path("/tmp"), Path("/dev/shm"), Path("/var/tmp")):
        target = directory / f"alphasaga-probe-{os.getpid()}"
        try:
            target.write_text("probe")
            target.unlink()
        except OSError:
            continue
        yield str(directory)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
