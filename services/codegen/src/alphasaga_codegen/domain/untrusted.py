"""Reading what comes back from the sandbox, trusting none of it.

Everything the service takes from a sandbox (the zygote's messages, each run's output,
the log the zygote writes) goes through here, bounded three ways: only a regular file or
a message socket is read, and a FIFO, a device or a symlink is refused without blocking
on it; every read has a size cap; every wait has a deadline. A run's output is then
checked as data: the exact index the run was given, float64 columns, at most
``MAX_FEATURES`` features with plain names, features finite or NaN, the signal finite
and within [-1, 1]. The runner inside checks the same things first, to give the
strategy's author a precise message; these checks are the ones that count.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import stat
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from . import sandbox_runner as runner
from .errors import (
    SandboxError,
    SandboxLimitExceeded,
    StrategyOutputError,
    StrategyRuntimeError,
    UnreadableOutput,
)

MAX_FEATURES = 64
FEATURE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
HEADER_BYTES = 1 << 16
LOG_TAIL_BYTES = 4000
FLOAT64 = np.dtype("<f8").str


class Deadline:
    """A point in time every wait of one step is measured against."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._at = time.monotonic() + seconds

    def remaining(self) -> float:
        return self._at - time.monotonic()


def read_regular_file(path: os.PathLike[str] | str, limit: int) -> bytes:
    """The last ``limit`` bytes of the regular file at ``path``; a symlink is refused by
    the open, a FIFO or device by ``fstat``, and neither can block the open."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:  # ELOOP for a symlink
        raise UnreadableOutput(f"cannot open {os.fspath(path)!r} from the sandbox: {exc.strerror}") from None
    try:
        return read_regular_fd(fd, limit, tail=True)
    finally:
        os.close(fd)


def read_regular_fd(fd: int, limit: int, *, tail: bool = False) -> bytes:
    """All of the regular file open at ``fd``, refused over ``limit`` bytes (``tail``:
    its last ``limit`` bytes instead)."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise UnreadableOutput("the sandbox handed back something that is not a regular file")
    if info.st_size > limit and not tail:
        raise UnreadableOutput(f"the sandbox handed back {info.st_size:,} bytes; at most {limit:,} were expected")
    start = max(0, info.st_size - limit)
    return os.pread(fd, min(info.st_size, limit), start)


def receive(control: socket.socket, deadline: Deadline) -> dict[str, Any] | None:
    """The zygote's next message, or None when it closed the socket (it died).

    Raises ``TimeoutError`` at the deadline (the caller kills the sandbox) and
    ``UnreadableOutput`` for anything but one bounded JSON object.
    """
    # poll, not select: select() fails on descriptors above 1023.
    poller = select.poll()
    poller.register(control, select.POLLIN)
    remaining = deadline.remaining()
    if remaining <= 0 or not poller.poll(remaining * 1000):
        raise TimeoutError(f"no answer from the sandbox within {deadline.seconds:g} s")
    data, _, flags, _ = control.recvmsg(runner.MESSAGE_BYTES)
    if not data:
        return None
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        raise UnreadableOutput(f"the sandbox sent a message over {runner.MESSAGE_BYTES:,} bytes")
    try:
        message = json.loads(data)
    except ValueError:
        raise UnreadableOutput("the sandbox sent a message that is not JSON") from None
    if not isinstance(message, dict):
        raise UnreadableOutput("the sandbox sent a message that is not an object")
    return message


def number(value: object, *, low: float = 0.0, high: float = 1e12) -> float:
    """A figure the zygote reported: a finite number within bounds, or ``UnreadableOutput``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise UnreadableOutput(f"the sandbox reported {str(value)[:40]!r} where a number was expected")
    return float(value)


@dataclass(frozen=True)
class Exited:
    """How one run ended, as the zygote saw it (``exit``: the code, or minus the signal)."""

    exit: int
    cpu_seconds: float
    peak_rss_bytes: int
    zygote_cpu_seconds: float

    @classmethod
    def parse(cls, message: dict[str, Any]) -> Exited:
        if message.get("state") != "exited":
            raise SandboxError(f"sandbox runner failed: {str(message.get('detail', message))[:300]}")
        return cls(
            exit=int(number(message.get("exit"), low=-256, high=256)),
            cpu_seconds=number(message.get("cpu_seconds")),
            peak_rss_bytes=int(number(message.get("peak_rss_bytes"))),
            zygote_cpu_seconds=number(message.get("zygote_cpu_seconds")),
        )


def split_frame(data: bytes) -> tuple[dict[str, Any], memoryview]:
    """The header and payload of ``runner.encode_frame``'s format, or ``UnreadableOutput``."""
    prefix = runner.FRAME_PREFIX
    if len(data) < prefix.size:
        raise UnreadableOutput("the run handed back no output")
    magic, length = prefix.unpack_from(data)
    if magic != runner.FRAME_MAGIC or length > HEADER_BYTES or prefix.size + length > len(data):
        raise UnreadableOutput("the run's output is not in the sandbox's format")
    try:
        header = json.loads(bytes(data[prefix.size : prefix.size + length]))
    except ValueError:
        header = None
    if not isinstance(header, dict):
        raise UnreadableOutput("the run's output header is not a JSON object")
    return header, memoryview(data)[prefix.size + length :]


def output_frame(data: bytes, index: pd.DatetimeIndex, label: str, cpu_limit: int) -> pd.DataFrame:
    """Features and signal of one run, indexed like the bars it was given; raises what
    its status says when it failed, and ``StrategyOutputError`` when the data breaks the
    contract."""
    header, payload = split_frame(data)
    if header.get("status") != "ok":
        raise_for_status(header, label, cpu_limit)
    names = _columns(header)
    rows = len(index)
    if header.get("rows") != rows or len(payload) != 8 * rows * (len(names) + 1):
        raise UnreadableOutput(f"the run's output does not hold {rows} rows of {len(names)} columns")
    described = header.get("index")
    stamps = np.frombuffer(payload, dtype="<i8", count=rows)
    if not isinstance(described, dict) or described.get("dtype") != index.dtype.str:
        raise StrategyOutputError(f"the output's index is not the bars' ({label})")
    if not np.array_equal(stamps, index.asi8):
        raise StrategyOutputError(f"the output's index is not the bars' index ({label})")
    values = np.frombuffer(payload, dtype=FLOAT64, offset=8 * rows).reshape(len(names), rows).copy()
    _check_values(names, values, index, label)
    # One block, and plain labels: pandas' Arrow-backed strings cost more than the data.
    return pd.DataFrame(values.T, index=index, columns=pd.Index(names, dtype=object), copy=False)


def _columns(header: dict[str, Any]) -> list[str]:
    columns = header.get("columns")
    if not isinstance(columns, list) or not 1 <= len(columns) <= MAX_FEATURES + 1:
        raise StrategyOutputError(f"a run must return the signal and at most {MAX_FEATURES} features")
    names = []
    for column in columns:
        if not (isinstance(column, list) and len(column) == 2 and column[1] == FLOAT64):
            raise UnreadableOutput("every output column must be float64")
        names.append(column[0])
    *features, last = names
    if last != runner.SIGNAL_COLUMN:
        raise UnreadableOutput(f"the output's last column must be {runner.SIGNAL_COLUMN!r}")
    bad = [name for name in features if not (isinstance(name, str) and FEATURE_NAME.fullmatch(name))]
    if bad:
        raise StrategyOutputError(f"feature names must match {FEATURE_NAME.pattern}; got {str(bad[0])[:70]!r}")
    if len(set(features)) != len(features) or runner.SIGNAL_COLUMN in features:
        raise StrategyOutputError(f"feature columns must be unique and not {runner.SIGNAL_COLUMN!r}")
    return names


def _check_values(names: list[str], values: np.ndarray, index: pd.DatetimeIndex, label: str) -> None:
    """Features finite or NaN; the signal finite and within [-1, 1] (NaN is outside)."""
    infinite = np.isinf(values[:-1])
    if infinite.any():
        column, row = (int(i) for i in np.argwhere(infinite)[0])
        raise StrategyOutputError(f"feature {names[column]!r} is infinite at {index[row]} ({label})")
    signal_values = values[-1]
    outside = ~((signal_values >= -1.0) & (signal_values <= 1.0))
    if outside.any():
        row = int(np.argmax(outside))
        raise StrategyOutputError(
            f"signal must be finite and within [-1, 1]; got {float(signal_values[row])!r} at {index[row]} ({label})"
        )


def raise_for_status(header: dict[str, Any], label: str, cpu_limit: int) -> None:
    """The failure a run reported about itself."""
    status = header.get("status")
    detail = f"{str(header.get('detail', ''))[: runner.DETAIL_CHARS]} ({label})"
    if status == "error":
        raise StrategyRuntimeError(detail, str(header.get("traceback", ""))[-runner.TRACEBACK_CHARS :])
    if status == "output":
        raise StrategyOutputError(detail)
    if status == "memory":
        raise SandboxLimitExceeded("memory", detail)
    if status == "cpu":
        raise SandboxLimitExceeded("cpu_time", f"used more than {cpu_limit} s of CPU ({label})")
    if status == "internal":
        raise SandboxError(f"sandbox runner failed: {detail}")
    raise UnreadableOutput(f"the run reported an unknown status {str(status)[:40]!r}")


def raise_for_exit(exited: Exited, output: bytes, label: str, cpu_limit: int) -> None:
    """Explain a run that was killed, or ended without writing anything."""
    signum = -exited.exit if exited.exit < 0 else None
    if signum == signal.SIGXCPU or (signum == signal.SIGKILL and exited.cpu_seconds >= cpu_limit):
        raise SandboxLimitExceeded("cpu_time", f"used more than {cpu_limit} s of CPU ({label})")
    if signum == signal.SIGKILL:
        raise SandboxLimitExceeded("memory", f"killed by SIGKILL, most likely out of memory ({label})")
    if signum == signal.SIGXFSZ:
        raise StrategyRuntimeError(f"wrote more output than the sandbox allows ({label})")
    if signum is not None:
        raise StrategyRuntimeError(f"sandbox process died with signal {signum} ({label})")
    if not output:
        raise UnreadableOutput(f"the run ended with code {exited.exit} and no output ({label})")
