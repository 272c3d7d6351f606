"""Rendering: readable, deterministic, and immune to text in the hypothesis."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

from alphasaga_codegen.domain import RenderError, render_strategy, validate_strategy
from alphasaga_contracts.research import FeatureSpec, Hypothesis, SignalSpec


def test_render_is_byte_identical_for_the_same_hypothesis(trend_hypothesis: Hypothesis) -> None:
    first = render_strategy(trend_hypothesis)
    second = render_strategy(trend_hypothesis.model_copy(deep=True))
    assert first.encode() == second.encode()


def test_parameter_key_order_does_not_change_the_code(reversion_hypothesis: Hypothesis) -> None:
    params = reversion_hypothesis.signal.params
    reordered = reversion_hypothesis.model_copy(
        update={"signal": SignalSpec(kind="zscore_reversion", params=dict(reversed(params.items())))}
    )
    assert render_strategy(reordered) == render_strategy(reversion_hypothesis)


@pytest.mark.parametrize("fixture", ["trend_hypothesis", "reversion_hypothesis"])
def test_rendered_code_validates_and_imports_only_numeric_libraries(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    source = render_strategy(request.getfixturevalue(fixture))
    validate_strategy(source)
    imported = {
        alias.name for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Import) for alias in node.names
    }
    assert imported <= {"numpy", "pandas", "math"}
    assert "def compute_features(bars: pd.DataFrame) -> pd.DataFrame:" in source
    assert "def compute_signal(bars: pd.DataFrame, features: pd.DataFrame) -> pd.Series:" in source


def test_only_the_helpers_in_use_are_rendered(reversion_hypothesis: Hypothesis) -> None:
    source = render_strategy(reversion_hypothesis)
    assert "def zscore(" in source and "def rsi(" in source
    assert "def sma_ratio(" not in source and "def momentum(" not in source
    assert '"zscore_20": zscore(close, window=20),' in source
    assert "ENTRY_Z = 1.5" in source and "EXIT_Z = 0.25" in source and "ALLOW_SHORT = True" in source


def test_defaults_are_written_out(trend_hypothesis: Hypothesis) -> None:
    source = render_strategy(trend_hypothesis)
    assert '"rsi_14": rsi(close, window=14),' in source
    assert "ALLOW_SHORT = False" in source


def test_free_text_cannot_escape_its_comment(trend_hypothesis: Hypothesis) -> None:
    hostile = 'fine\n"""\nimport os\r\nos.system("x")\x0cexec("1")\u2028open("/etc/passwd")\x00'
    h = trend_hypothesis.model_copy(update={"rationale": hostile, "entry_rule": hostile, "exit_rule": '"""'})
    source = render_strategy(h)
    validate_strategy(source)  # would name os, exec or open if any became code
    assert "#   import os" in source
    assert "\x00" not in source and "\x0c" not in source and "\u2028" not in source


@pytest.mark.parametrize(
    ("features", "signal", "message"),
    [
        ([FeatureSpec(name="a", kind="rsi", params={"span": 3})], None, "unknown parameter"),
        ([FeatureSpec(name="a", kind="zscore", params={"window": 1})], None, ">= 2"),
        ([FeatureSpec(name="a", kind="momentum", params={"window": 2.5})], None, "whole number"),
        ([FeatureSpec(name="a", kind="momentum", params={"window": float("nan")})], None, "finite"),
        ([FeatureSpec(name="a", kind="rsi"), FeatureSpec(name="a", kind="momentum")], None, "unique"),
        ([FeatureSpec(name="signal", kind="rsi")], None, "reserved"),
        (None, SignalSpec(kind="ma_crossover", params={"fast": 50, "slow": 20}), "shorter"),
        (None, SignalSpec(kind="zscore_reversion", params={"entry_z": 1.0, "exit_z": 1.0}), "exit_z"),
        (None, SignalSpec(kind="zscore_reversion", params={"entry_z": -1.0}), "entry_z"),
        (None, SignalSpec(kind="ma_crossover", params={"allow_short": 2}), "allow_short"),
    ],
)
def test_unusable_parameters_are_rejected(
    trend_hypothesis: Hypothesis,
    features: list[FeatureSpec] | None,
    signal: SignalSpec | None,
    message: str,
) -> None:
    update: dict[str, object] = {}
    if features is not None:
        update["features"] = features
    if signal is not None:
        update["signal"] = signal
    with pytest.raises(RenderError, match=message):
        render_strategy(trend_hypothesis.model_copy(update=update))


def test_rendered_code_is_lint_clean(
    trend_hypothesis: Hypothesis, reversion_hypothesis: Hypothesis, tmp_path: Path
) -> None:
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not on PATH")
    for name, h in [("trend.py", trend_hypothesis), ("reversion.py", reversion_hypothesis)]:
        (tmp_path / name).write_text(render_strategy(h))
    done = subprocess.run(
        [ruff, "check", "--isolated", "--select", "E,F,W,B,SIM", "--line-length", "100", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
