"""Whole hostile strategies, built on the corpus, against the guarantees themselves.

Each chain is refused by the checker. With the checker off, in each sandbox: a strategy
that looks for the full bars on disk, or patches the runner, still has its look-ahead
found by the service; a signal out of range is refused however it is handed back; FIFOs
and threads left behind do not hold the service up; no host file's content reaches the
result that would be stored; no run finds anything an earlier run left.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator

import numpy as np
import pytest

from alphasaga_codegen.domain import (
    DEFAULT_LIMITS,
    LookaheadDetected,
    RuleViolation,
    Sandbox,
    StrategyOutputError,
    check_no_lookahead,
    validate_strategy,
)
from alphasaga_codegen.service import write_frame
from services.codegen.tests.escape_corpus import FIFO_THREAD, FLAVOURS, SECRET_TEXT, Host, chain_bars, confined

HEADER = "import numpy as np\nimport pandas as pd\n\n"
CAUSAL_SIGNAL = "\n\ndef compute_signal(bars, features):\n    return (bars['close'].diff() > 0).astype('float64')\n"

# The first chain: read the full bars where the runner used to keep them.
BARS_FILE_PEEK = HEADER + textwrap.dedent(
    """\
    import glob
    import os


    def future_closes():
        best = None
        places = ("*", "../*", "/sandbox/*", "/proc/*/cwd/*", "/tmp/*/*", "/tmp/*/box/*")
        for path in sorted({found for pattern in places for found in glob.glob(pattern)}):
            if not os.path.isfile(path):
                continue
            try:
                frame = pd.read_parquet(path)
            except Exception:
                continue
            if "close" in frame and (best is None or len(frame) > len(best)):
                best = frame["close"]
        return best


    def compute_features(bars):
        return pd.DataFrame({"ret": bars["close"].pct_change()}, index=bars.index)


    def compute_signal(bars, features):
        close = bars["close"]
        future = future_closes()
        ahead = close.shift(-1) if future is None else future.shift(-1).reindex(close.index)
        return (ahead > close).astype("float64")
    """
)

# The second chain: switch the check off inside the run, and peek.
PATCHED_RUNNER_PEEK = HEADER + textwrap.dedent(
    """\
    import sys


    def compute_features(bars):
        runner = sys.modules["__main__"]
        runner.compare = lambda *args, **kwargs: None
        runner.checked_signal = lambda signal, index: signal.to_numpy()
        return pd.DataFrame({"next": bars["close"].shift(-1)}, index=bars.index)


    def compute_signal(bars, features):
        return (bars["close"].shift(-1) > bars["close"]).astype("float64")
    """
)

PATCHED_RUNNER_OUT_OF_RANGE = HEADER + textwrap.dedent(
    """\
    import sys


    def compute_features(bars):
        runner = sys.modules["__main__"]
        runner.checked_signal = lambda signal, index: signal.to_numpy()
        return pd.DataFrame(index=bars.index)


    def compute_signal(bars, features):
        return pd.Series(5.0, index=bars.index)
    """
)

# The run writes its own output, in the right format, and leaves before the runner does.
FORGED_OUTPUT = HEADER + textwrap.dedent(
    """\
    import os
    import sys


    def compute_features(bars):
        runner = sys.modules["__main__"]
        forged = runner.encode_columns(bars.index, ["signal"], [np.full(len(bars), 5.0)])
        for name in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{name}")
            except OSError:
                continue
            if "output" in target:
                os.write(int(name), forged)
                os._exit(0)
        return pd.DataFrame(index=bars.index)


    def compute_signal(bars, features):
        return pd.Series(0.0, index=bars.index)
    """
)

FIFO_LEFT_BEHIND = (
    HEADER
    + "def fifos():\n"
    + textwrap.indent(FIFO_THREAD, "    ")
    + "\n\n\ndef compute_features(bars):\n    fifos()\n"
    + "    return pd.DataFrame({'ret': bars['close'].pct_change()}, index=bars.index)"
    + CAUSAL_SIGNAL
)

# The fallback's issue: a world-readable host file carried out in the features.
EXFILTRATION = (
    HEADER
    + textwrap.dedent(
        """\
    def loot():
        for path in (SECRET_FILE, "/etc/passwd", "/etc/hostname", "/proc/1/root/etc/passwd"):
            try:
                return open(path).read()
            except OSError:
                pass
        return ""


    def compute_features(bars):
        text = loot()
        codes = [float(ord(c)) for c in text[: len(bars)]]
        name = "x_" + "".join(c for c in text if c.isalnum())[:40]
        return pd.DataFrame({name: codes + [np.nan] * (len(bars) - len(codes))}, index=bars.index)
    """
    )
    + CAUSAL_SIGNAL
)

# Leave something behind in every place one process could find from another.
STASH = (
    HEADER
    + textwrap.dedent(
        """\
    import builtins
    import os


    def found_stashes():
        found = hasattr(pd, "stash") + hasattr(builtins, "stash") + ("STASH" in os.environ)
        for path in ("stash", "/sandbox/stash", "/dev/shm/stash", "/tmp/stash"):
            found += os.path.exists(path)
        return found


    def stash(bars):
        pd.stash = builtins.stash = bars
        os.environ["STASH"] = "x"
        for path in ("stash", "/dev/shm/stash", "/tmp/stash"):
            try:
                open(path, "w").write("x")
            except OSError:
                pass


    def compute_features(bars):
        found = found_stashes()
        stash(bars)
        return pd.DataFrame({"found": float(found)}, index=bars.index)
    """
    )
    + CAUSAL_SIGNAL
)

CHAINS = {
    "bars_file_peek": BARS_FILE_PEEK,
    "patched_runner_peek": PATCHED_RUNNER_PEEK,
    "patched_runner_out_of_range": PATCHED_RUNNER_OUT_OF_RANGE,
    "forged_output": FORGED_OUTPUT,
    "fifo_left_behind": FIFO_LEFT_BEHIND,
    "exfiltration": EXFILTRATION,
    "stash": STASH,
}


@pytest.fixture(scope="module", params=FLAVOURS)
def sandbox_and_host(request: pytest.FixtureRequest) -> Iterator[tuple[Sandbox, Host]]:
    with confined(*request.param, DEFAULT_LIMITS) as kept:
        yield kept


def with_secret_file(source: str, place: Host) -> str:
    return source.replace(HEADER, f"{HEADER}SECRET_FILE = {place.secret_file!r}\n\n\n", 1)


@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_the_checker_refuses_every_chain(chain: str) -> None:
    with pytest.raises(RuleViolation):
        validate_strategy(CHAINS[chain])


def test_reading_the_bars_from_disk_does_not_hide_a_peek(sandbox_and_host: tuple[Sandbox, Host]) -> None:
    sandbox, _ = sandbox_and_host
    with pytest.raises(LookaheadDetected) as caught:
        check_no_lookahead(BARS_FILE_PEEK, chain_bars(), sandbox=sandbox, validate=False)
    assert caught.value.column == "signal"


def test_patching_the_runner_does_not_hide_a_peek(sandbox_and_host: tuple[Sandbox, Host]) -> None:
    sandbox, _ = sandbox_and_host
    with pytest.raises(LookaheadDetected):
        check_no_lookahead(PATCHED_RUNNER_PEEK, chain_bars(), sandbox=sandbox, validate=False)


@pytest.mark.parametrize("chain", ["patched_runner_out_of_range", "forged_output"])
def test_a_signal_out_of_range_is_refused_however_it_is_handed_back(
    sandbox_and_host: tuple[Sandbox, Host], chain: str
) -> None:
    sandbox, _ = sandbox_and_host
    with pytest.raises(StrategyOutputError, match=r"within \[-1, 1\]; got 5.0"):
        sandbox.run(CHAINS[chain], [("on all bars", chain_bars())], validate=False)


def test_fifos_and_threads_left_behind_do_not_hold_the_service_up(sandbox_and_host: tuple[Sandbox, Host]) -> None:
    sandbox, _ = sandbox_and_host
    bars = chain_bars()
    report = check_no_lookahead(FIFO_LEFT_BEHIND, bars, sandbox=sandbox, validate=False)
    assert report.runs > 40  # every variant ran, each with its thread, and was read back
    assert report.sandbox.frame.index.equals(bars.index)


def test_no_host_file_reaches_the_stored_result(sandbox_and_host: tuple[Sandbox, Host]) -> None:
    sandbox, place = sandbox_and_host
    result = sandbox.run(with_secret_file(EXFILTRATION, place), [("on all bars", chain_bars())], validate=False)
    stored = write_frame(result.frame)  # what codegen stores as signals.csv
    assert SECRET_TEXT.encode() not in stored and b"root" not in stored
    (name,) = [column for column in result.frame.columns if column != "signal"]
    assert name == "x_"  # nothing was read: the name carries nothing
    assert result.frame[name].isna().all()


def test_no_run_finds_what_an_earlier_run_left(sandbox_and_host: tuple[Sandbox, Host]) -> None:
    sandbox, _ = sandbox_and_host
    bars = chain_bars()
    runs = [(f"run {i}", bars.iloc[: 20 + 10 * i]) for i in range(4)]
    result = sandbox.run(STASH, runs, validate=False)
    for output in result.outputs:
        assert np.all(output["found"] == 0.0), output["found"].iloc[0]
