"""What comes back from the sandbox is read as hostile: only regular files, within caps,
within deadlines, and checked as data before the service uses it."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pytest

from alphasaga_codegen.domain import (
    LookaheadDetected,
    RenderError,
    SandboxLimitExceeded,
    SandboxLimits,
    StrategyOutputError,
    UnreadableOutput,
    bubblewrap_available,
    namespaces_available,
    untrusted,
)
from alphasaga_codegen.domain import sandbox_runner as runner
from alphasaga_codegen.domain.sandbox import Sandbox
from alphasaga_codegen.service import rejection

INDEX = pd.bdate_range("2020-01-01", periods=5, name="date")
FLAT = (
    "import pandas as pd\n\n\ndef compute_features(bars):\n    return pd.DataFrame(index=bars.index)\n\n\n"
    "def compute_signal(bars, features):\n    return pd.Series(0.0, index=bars.index)\n"
)


def output(columns: dict[str, object], index: pd.DatetimeIndex = INDEX) -> bytes:
    """A run's output as an honest runner writes it."""
    arrays = [np.asarray(values, dtype="float64") for values in columns.values()]
    return runner.encode_columns(index, list(columns), arrays)


def frame_of(data: bytes) -> pd.DataFrame:
    return untrusted.output_frame(data, INDEX, "on all bars", 20)


def test_a_fifo_a_symlink_or_a_device_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "status.json"
    os.mkfifo(fifo)  # no writer: a blocking open or read would wait for ever
    (tmp_path / "real").write_text("{}")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    for path in (fifo, tmp_path / "link", Path("/dev/zero")):
        with pytest.raises(UnreadableOutput):
            untrusted.read_regular_file(path, 1 << 10)


def test_a_file_over_its_cap_is_refused_or_only_its_tail_read(tmp_path: Path) -> None:
    path = tmp_path / "stderr.txt"
    path.write_bytes(b"x" * 5000 + b"the end")
    assert untrusted.read_regular_file(path, 7) == b"the end"
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(UnreadableOutput, match="5,007 bytes"):
            untrusted.read_regular_fd(fd, 1000)
    finally:
        os.close(fd)


def test_every_wait_for_a_message_ends_at_its_deadline() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, theirs:
        with pytest.raises(TimeoutError):
            untrusted.receive(ours, untrusted.Deadline(0.2))  # nobody writes
        theirs.send(b"x" * (runner.MESSAGE_BYTES + 1))
        with pytest.raises(UnreadableOutput, match="over"):
            untrusted.receive(ours, untrusted.Deadline(5))
        theirs.send(b"not json")
        with pytest.raises(UnreadableOutput, match="JSON"):
            untrusted.receive(ours, untrusted.Deadline(5))
        theirs.send(json.dumps({"state": "exited"}).encode())
        assert untrusted.receive(ours, untrusted.Deadline(5)) == {"state": "exited"}
        theirs.close()
        assert untrusted.receive(ours, untrusted.Deadline(5)) is None


def test_an_honest_output_reads_back_exactly() -> None:
    frame = frame_of(output({"x": [1.0, np.nan, 3.0, 4.0, 5.0], "signal": [0.0, 1.0, -1.0, 0.5, 0.0]}))
    assert list(frame.columns) == ["x", "signal"] and frame.index.equals(INDEX)
    assert frame["x"].isna().sum() == 1 and frame["signal"].tolist() == [0.0, 1.0, -1.0, 0.5, 0.0]


MALFORMED = (
    "empty", "not-ours", "header-too-long", "short", "rows", "index", "no-signal", "inf-feature",
    "nan-signal", "out-of-range", "feature-name", "too-many",
)  # fmt: skip


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"", UnreadableOutput, "no output"),
        (b"PK\x03\x04" + b"\x00" * 64, UnreadableOutput, "format"),
        (runner.FRAME_PREFIX.pack(runner.FRAME_MAGIC, 1 << 20) + b"{}", UnreadableOutput, "format"),
        (output({"signal": [0.0] * 5})[:-8], UnreadableOutput, "5 rows"),
        (output({"signal": [0.0] * 4}, INDEX[:4]), UnreadableOutput, "5 rows"),
        (output({"signal": [0.0] * 5}, INDEX + pd.Timedelta(days=1)), StrategyOutputError, "index"),
        (output({"x": [0.0] * 5}), UnreadableOutput, "last column"),
        (output({"x": [np.inf, 0, 0, 0, 0], "signal": [0.0] * 5}), StrategyOutputError, "infinite"),
        (output({"signal": [0.0, np.nan, 0, 0, 0]}), StrategyOutputError, "finite"),
        (output({"signal": [0.0, 5.0, 0, 0, 0]}), StrategyOutputError, "got 5.0"),
        (output({"a b": [0.0] * 5, "signal": [0.0] * 5}), StrategyOutputError, "names"),
        (output({f"x{i}": [0.0] * 5 for i in range(65)} | {"signal": [0.0] * 5}), StrategyOutputError, "at most"),
    ],
    ids=MALFORMED,
)
def test_a_malformed_or_contract_breaking_output_is_refused(data: bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        if not data:
            untrusted.raise_for_exit(untrusted.Exited(0, 0.1, 0, 0.0), data, "on all bars", 20)
        frame_of(data)


def test_a_column_that_is_not_float64_is_refused() -> None:
    data = runner.encode_columns(INDEX, ["signal"], [np.zeros(5, dtype="int64")])
    with pytest.raises(UnreadableOutput, match="float64"):
        frame_of(data)


def test_what_cannot_be_read_fails_the_step_as_invalid_input() -> None:
    assert rejection(UnreadableOutput("the run's output is not in the sandbox's format")).kind == "invalid_input"
    assert rejection(SandboxLimitExceeded("wall_clock", "still running")).kind == "sandbox_limit"
    assert rejection(StrategyOutputError("signal out of range")).kind == "strategy_error"
    assert rejection(RenderError("no template")).kind == "invalid_input"
    assert rejection(LookaheadDetected(INDEX[1], INDEX[0])).kind == "lookahead"


def _zygote_pid(sandbox: Sandbox) -> int:
    """The python process that runs runner.py under the sandbox's launcher."""
    (zygote,) = sandbox.zygotes()
    launcher = zygote.process.pid
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
            pid = int(cmdline.parent.name)
            # Not bwrap or unshare, whose own arguments name runner.py too.
            python = Path(argv[0].decode()).name.startswith("python")
            if python and b"runner.py" in argv[-3] + argv[-2] and _descends(pid, launcher):
                return pid
        except (OSError, IndexError):
            continue
    raise AssertionError("no zygote found")


def _descends(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return False


@pytest.mark.skipif(not (bubblewrap_available() or namespaces_available()), reason="no sandbox here")
def test_a_sandbox_that_stops_answering_is_killed_and_the_step_fails_as_invalid_input() -> None:
    kind = "bubblewrap" if bubblewrap_available() else "namespaces"
    sandbox = Sandbox(kind, SandboxLimits(cpu_seconds=5, memory_bytes=768 << 20, wall_seconds=3.0))
    bars = pd.DataFrame({"close": np.linspace(1.0, 2.0, 5)}, index=INDEX)
    try:
        sandbox.run(FLAT, [("on all bars", bars)])  # ready, and serving
        os.kill(_zygote_pid(sandbox), signal.SIGSTOP)
        with pytest.raises(UnreadableOutput, match="in time") as caught:
            sandbox.run(FLAT, [("on all bars", bars)])
        assert rejection(caught.value).kind == "invalid_input"
        # The stopped sandbox was killed; the next job gets a new one.
        assert sandbox.run(FLAT, [("on all bars", bars)]).frame.index.equals(INDEX)
    finally:
        sandbox.close()
