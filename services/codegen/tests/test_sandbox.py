"""The sandbox: runs rendered code, each run in a fresh process, enforces each limit, and
reports how it contained it."""

from __future__ import annotations

import os

import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pytest

from alphasaga_codegen.domain import (
    RuleViolation,
    Sandbox,
    SandboxLimitExceeded,
    SandboxLimits,
    SandboxMode,
    SandboxUnavailable,
    StrategyOutputError,
    StrategyRuntimeError,
    bubblewrap_available,
    namespaces_available,
    probe_sandbox,
    render_strategy,
    resolve_sandbox,
    run_strategy,
)
from alphasaga_codegen.domain import sandbox as sandbox_module
from alphasaga_contracts.research import Hypothesis

BWRAP = bubblewrap_available()
needs_bwrap = pytest.mark.skipif(
    not BWRAP, reason="bubblewrap is not installed or cannot create user namespaces on this machine"
)
NAMESPACES = namespaces_available()
needs_namespaces = pytest.mark.skipif(not NAMESPACES, reason="unshare cannot create namespaces on this machine")
CONFINED: list[object] = [
    pytest.param("bubblewrap", marks=needs_bwrap),
    pytest.param("namespaces", marks=needs_namespaces),
]


def strategy(features_body: str, signal_body: str = "return pd.Series(0.0, index=bars.index)") -> str:
    """A minimal valid module with the given entry-point bodies."""
    return (
        "import numpy as np\nimport pandas as pd\n\n\n"
        f"def compute_features(bars):\n    {features_body}\n\n\n"
        f"def compute_signal(bars, features):\n    {signal_body}\n"
    )


FLAT = strategy("return pd.DataFrame({'x': bars['close'] * 2.0}, index=bars.index)")


def test_trend_strategy_runs_and_follows_its_rule(
    trend_hypothesis: Hypothesis, bars: pd.DataFrame, limits: SandboxLimits
) -> None:
    result = run_strategy(render_strategy(trend_hypothesis), bars, limits=limits)
    frame = result.frame
    assert list(frame.columns) == ["sma_ratio_20", "momentum_10", "volatility_20", "rsi_14", "signal"]
    assert frame.index.equals(bars.index)
    close = bars["close"]
    expected = (close.rolling(10).mean() > close.rolling(40).mean()).astype("float64")
    pd.testing.assert_series_equal(frame["signal"], expected, check_names=False)
    pd.testing.assert_series_equal(frame["momentum_10"], close / close.shift(10) - 1.0, check_names=False)
    assert frame["rsi_14"].dropna().between(0, 100).all()


def test_reversion_strategy_runs_and_trades_both_ways(
    reversion_hypothesis: Hypothesis, bars: pd.DataFrame, limits: SandboxLimits
) -> None:
    result = run_strategy(render_strategy(reversion_hypothesis), bars, limits=limits)
    signal = result.frame["signal"]
    assert set(signal.unique()) == {-1.0, 0.0, 1.0}
    assert (signal.iloc[:19] == 0.0).all()  # no z-score before 20 bars
    z = result.frame["zscore_20"]
    entries = (signal == 1.0) & (signal.shift(1, fill_value=0.0) == 0.0)
    assert (z[entries] <= -1.5).all()


def test_result_reports_the_sandbox_and_timing(bars: pd.DataFrame, limits: SandboxLimits) -> None:
    result = run_strategy(FLAT, bars, limits=limits)
    assert result.sandbox == ("bubblewrap" if BWRAP else "namespaces") == resolve_sandbox()
    assert result.runs == 1 and result.outputs[0] is result.frame
    # A zygote started for this job alone: its start-up is the job's too.
    assert 0 < result.job_cpu_seconds < result.cpu_seconds
    assert result.wall_seconds > 0
    assert 0 < result.peak_memory_bytes < limits.memory_bytes
    forced = run_strategy(FLAT, bars, limits=limits, mode="rlimits")
    assert forced.sandbox == "rlimits" and "read-only mounts" not in forced.guards
    pd.testing.assert_frame_equal(forced.frame, result.frame)


def test_unvalidated_code_never_reaches_the_sandbox(bars: pd.DataFrame) -> None:
    with pytest.raises(RuleViolation):
        run_strategy(strategy("import os"), bars)


@pytest.mark.parametrize("mode", CONFINED)
def test_endless_loop_hits_the_cpu_limit(bars: pd.DataFrame, mode: SandboxMode) -> None:
    with pytest.raises(SandboxLimitExceeded) as caught:
        run_strategy(
            strategy("while True:\n        pass"),
            bars,
            limits=SandboxLimits(2, 768 << 20, 20.0),
            mode=mode,
            validate=False,
        )
    assert caught.value.limit == "cpu_time"


@pytest.mark.parametrize("body", ["while True:\n        pass", "import time\n    time.sleep(600)"])
def test_a_run_still_going_at_the_wall_clock_is_killed_and_the_next_job_gets_a_new_sandbox(
    bars: pd.DataFrame, body: str
) -> None:
    sandbox = Sandbox(resolve_sandbox(), SandboxLimits(60, 768 << 20, 2.0))
    try:
        with pytest.raises(SandboxLimitExceeded) as caught:
            sandbox.run(strategy(body), [("on all bars", bars)], validate=False)
        assert caught.value.limit == "wall_clock"
        assert sandbox.run(FLAT, [("on all bars", bars)]).frame.index.equals(bars.index)
    finally:
        sandbox.close()


def test_the_cpu_limit_is_for_the_whole_job(bars: pd.DataFrame) -> None:
    # Each run spins 0.7 s of CPU: the second still fits in 2 s, the third does not.
    spin = "import time\n    while time.process_time() < 0.7:\n        pass\n    return pd.DataFrame(index=bars.index)"
    sandbox = Sandbox(resolve_sandbox(), SandboxLimits(2, 768 << 20, 60.0), ahead=False)
    with pytest.raises(SandboxLimitExceeded) as caught:
        sandbox.run(strategy(spin), [(f"run {i}", bars) for i in range(4)], validate=False)
    assert caught.value.limit == "cpu_time"
    assert "run 0" not in str(caught.value)


@pytest.mark.parametrize("mode", CONFINED)
def test_huge_allocation_hits_the_memory_limit(bars: pd.DataFrame, limits: SandboxLimits, mode: SandboxMode) -> None:
    # 3.2 GB: fine for this machine without limits, far over the 768 MiB address space.
    with pytest.raises(SandboxLimitExceeded) as caught:
        run_strategy(strategy("big = np.ones(len(bars) * 800_000)\n    return big"), bars, limits=limits, mode=mode)
    assert caught.value.limit == "memory"


def test_strategy_exception_carries_its_traceback(bars: pd.DataFrame, limits: SandboxLimits) -> None:
    source = strategy("return pd.DataFrame(index=bars.index)", "raise ValueError('no signal today')")
    with pytest.raises(StrategyRuntimeError) as caught:
        run_strategy(source, bars, limits=limits)
    assert "ValueError: no signal today" in caught.value.detail
    assert "strategy.py" in caught.value.traceback_tail and "compute_signal" in caught.value.traceback_tail


@pytest.mark.parametrize(
    ("signal_body", "message"),
    [
        ("return pd.Series(2.0, index=bars.index)", "within"),
        ("return pd.Series(np.inf, index=bars.index)", "within"),
        ("return pd.Series(0.0, index=bars.index[1:])", "index"),
        ("return bars['close'].to_numpy()", "not Series"),
    ],
)
def test_contract_breaking_output_is_rejected(
    signal_body: str, message: str, bars: pd.DataFrame, limits: SandboxLimits
) -> None:
    with pytest.raises(StrategyOutputError, match=message):
        run_strategy(strategy("return pd.DataFrame(index=bars.index)", signal_body), bars, limits=limits)


@pytest.mark.parametrize(
    ("features_body", "message"),
    [
        ("return pd.DataFrame({'x': bars['close'] * np.inf}, index=bars.index)", "infinite"),
        ("return pd.DataFrame({f'x{i}': bars['close'] for i in range(65)}, index=bars.index)", "at most 64"),
        ("return pd.DataFrame({'a b': bars['close']}, index=bars.index)", "names must match"),
    ],
)
def test_features_must_be_finite_or_nan_few_and_plainly_named(
    features_body: str, message: str, bars: pd.DataFrame, limits: SandboxLimits
) -> None:
    with pytest.raises(StrategyOutputError, match=message):
        run_strategy(strategy(features_body), bars, limits=limits)


def test_nan_features_are_accepted_and_a_nan_signal_is_not(bars: pd.DataFrame, limits: SandboxLimits) -> None:
    nan_feature = strategy("return pd.DataFrame({'x': bars['close'] * np.nan}, index=bars.index)")
    assert run_strategy(nan_feature, bars, limits=limits).frame["x"].isna().all()
    source = strategy("return pd.DataFrame(index=bars.index)", "return pd.Series(np.nan, index=bars.index)")
    with pytest.raises(StrategyOutputError, match="finite"):
        run_strategy(source, bars, limits=limits)


def test_bad_bars_are_refused(bars: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="DatetimeIndex"):
        run_strategy(FLAT, bars.reset_index())
    with pytest.raises(ValueError, match="date order"):
        run_strategy(FLAT, bars.iloc[::-1])
    with pytest.raises(ValueError, match="numeric"):
        run_strategy(FLAT, bars.assign(symbol="SPX"))


def test_limits_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValueError, match="memory"):
        SandboxLimits(memory_bytes=64 << 20)
    with pytest.raises(ValueError, match="wall"):
        SandboxLimits(wall_seconds=float("inf"))
    with pytest.raises(ValueError, match="disk"):
        SandboxLimits(disk_bytes=1024)


def test_asking_for_a_sandbox_that_cannot_run_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_module, "bubblewrap_available", lambda: False)
    with pytest.raises(SandboxUnavailable):
        resolve_sandbox("bubblewrap")
    monkeypatch.setattr(sandbox_module, "namespaces_available", lambda: False)
    with pytest.raises(SandboxUnavailable, match="no sandbox"):
        resolve_sandbox("auto")  # never silently the unconfined kind
    assert resolve_sandbox("rlimits") == "rlimits"


def test_environment_is_not_inherited(monkeypatch: pytest.MonkeyPatch, limits: SandboxLimits) -> None:
    monkeypatch.setenv("ALPHASAGA_TEST_SECRET", "hunter2")
    modes: list[SandboxMode] = ["auto", "rlimits", *(["namespaces"] if NAMESPACES else [])]
    for mode in modes:
        probe = probe_sandbox(limits=limits, mode=mode)
        assert "ALPHASAGA_TEST_SECRET" not in probe.environment


@needs_bwrap
def test_bubblewrap_has_no_network_and_a_read_only_filesystem(limits: SandboxLimits) -> None:
    # Strategies cannot import socket, so the runner's own probe opens the connection.
    probe = probe_sandbox(limits=limits, mode="bubblewrap")
    assert probe.sandbox == "bubblewrap"
    assert probe.interfaces == ("lo",)
    assert probe.connect_error is not None
    assert probe.network_isolated
    assert probe.writable == (probe.workdir,)
    assert probe.writable_outside_workdir == ()
    assert probe.readable == ()  # /etc/passwd, /etc/hosts, /home, /tmp…: not there at all
    assert probe.processes == (1,)  # the run is the init of its own PID namespace


@needs_namespaces
def test_the_fallback_reads_no_host_file_writes_only_its_work_directory_and_has_no_network(
    limits: SandboxLimits,
) -> None:
    probe = probe_sandbox(limits=limits, mode="namespaces")
    assert probe.sandbox == "namespaces"
    assert {"empty root", "unprivileged"} <= set(probe.guards)
    assert probe.interfaces == ("lo",)
    assert probe.network_isolated
    assert probe.writable == (probe.workdir,)
    assert probe.readable == ()  # an empty root, as bubblewrap's: no host file is there
    assert probe.processes == (1,)
    assert probe.uid != 0 or os.geteuid() != 0  # root drops to an unprivileged uid


def test_a_pool_runs_a_job_beside_one_still_running_each_on_a_warm_zygote_of_its_own(bars: pd.DataFrame) -> None:
    import concurrent.futures

    sleeper = strategy("import time\n    time.sleep(600)")
    # The sleeper ends at the wall limit: long enough for the other job on a busy machine,
    # short enough not to hold the suite (it waited the default 30 s before).
    sandbox = Sandbox(resolve_sandbox(), SandboxLimits(60, 768 << 20, 15.0), size=2)
    try:
        assert len(sandbox.zygotes()) == 2, "both started ahead of the first job"
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            held = pool.submit(sandbox.run, sleeper, [("on all bars", bars)], validate=False)
            assert sandbox.run(FLAT, [("on all bars", bars)]).frame.index.equals(bars.index)
            assert not held.done(), "the second job did not wait for the first"
            with pytest.raises(SandboxLimitExceeded):
                held.result()
        assert len(sandbox.zygotes()) == 2, "the killed job's zygote was replaced"
    finally:
        sandbox.close()
    assert sandbox.zygotes() == []
