"""Render a hypothesis into a readable, self-contained strategy module.

The generated module imports only numpy, pandas and math and exposes two entry points:

``compute_features(bars) -> DataFrame``
    One float column per ``FeatureSpec``, named ``FeatureSpec.name``. Every feature kind
    takes one parameter, ``window`` (an integer number of bars):

    ==============  =======  ==========================================================
    kind            default  value at bar t
    ==============  =======  ==========================================================
    ``sma_ratio``   20       close / SMA(close, window) - 1
    ``momentum``    20       close / close ``window`` bars earlier - 1
    ``zscore``      20       (close - rolling mean) / rolling std (window >= 2)
    ``volatility``  20       rolling std of log returns, per bar, not annualised (>= 2)
    ``rsi``         14       Wilder's RSI, 0..100 (exponential smoothing, alpha=1/window)
    ==============  =======  ==========================================================

``compute_signal(bars, features) -> Series``
    The desired position in [-1, 1] at the close of each bar, named ``signal``, flat (0)
    until its indicators have enough history.

    ``ma_crossover``: ``fast`` (20), ``slow`` (50, must exceed ``fast``), ``allow_short``
    (0 or 1, default 0). Long while SMA(fast) > SMA(slow); when ``allow_short`` is 1,
    short while SMA(fast) < SMA(slow), otherwise flat.

    ``zscore_reversion``: ``window`` (20, >= 2), ``entry_z`` (2.0, > 0), ``exit_z``
    (0.5, 0 <= exit_z < entry_z), ``allow_short`` (default 1). With z the rolling
    z-score of the close: go long when z <= -entry_z and stay long until z >= -exit_z;
    mirrored for shorts. The state carries from bar to bar, reading only the current z.

Unknown parameters are rejected rather than ignored, so a planner that misspells one
learns about it instead of silently getting the default.
"""

from __future__ import annotations

import hashlib
import json
import math
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jinja2

from alphasaga_contracts.research import FeatureSpec, Hypothesis, SignalSpec

from .errors import RenderError

TEMPLATE_NAME = "strategy.py.j2"
COMMENT_WIDTH = 88

# Feature kinds in the order their helper functions appear in generated code.
FEATURE_KINDS = ("sma_ratio", "momentum", "zscore", "volatility", "rsi")
RESERVED_COLUMNS = frozenset({"signal"})


@dataclass(frozen=True)
class _Param:
    """How one numeric parameter is checked and written into the code."""

    default: int | float
    kind: type[int] | type[float] | type[bool]
    minimum: float
    maximum: float = 100_000.0
    exclusive_minimum: bool = False


_WINDOW = _Param(20, int, 1)
_STD_WINDOW = _Param(20, int, 2)

FEATURE_PARAMS: Mapping[str, Mapping[str, _Param]] = {
    "sma_ratio": {"window": _WINDOW},
    "momentum": {"window": _WINDOW},
    "zscore": {"window": _STD_WINDOW},
    "volatility": {"window": _STD_WINDOW},
    "rsi": {"window": _Param(14, int, 1)},
}

SIGNAL_PARAMS: Mapping[str, Mapping[str, _Param]] = {
    "ma_crossover": {
        "fast": _Param(20, int, 1),
        "slow": _Param(50, int, 2),
        "allow_short": _Param(0, bool, 0, 1),
    },
    "zscore_reversion": {
        "window": _STD_WINDOW,
        "entry_z": _Param(2.0, float, 0.0, 100.0, exclusive_minimum=True),
        "exit_z": _Param(0.5, float, 0.0, 100.0),
        "allow_short": _Param(1, bool, 0, 1),
    },
}


def _environment() -> jinja2.Environment:
    """Jinja set up for code, not HTML: no escaping, strict about missing variables."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("alphasaga_codegen.domain", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


_ENV = _environment()


def render_strategy(h: Hypothesis) -> str:
    """Render ``h`` as Python source; the same hypothesis always gives the same bytes."""
    features = [_feature_context(spec) for spec in h.features]
    names = [f["name"] for f in features]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RenderError(f"feature names must be unique; repeated: {', '.join(duplicates)}")
    reserved = sorted(RESERVED_COLUMNS.intersection(names))
    if reserved:
        raise RenderError(f"feature name {reserved[0]!r} is reserved for the output column")

    signal = _signal_context(h.signal)
    kinds = [k for k in FEATURE_KINDS if any(f["kind"] == k for f in features)]
    uses_numpy = "volatility" in kinds or signal["kind"] == "zscore_reversion"
    context: dict[str, Any] = {
        "hypothesis_sha256": hypothesis_sha256(h),
        "family": h.family,
        "family_title": h.family.replace("_", "-").capitalize(),
        "planner": h.planner,
        "label_horizon": h.label_horizon,
        "rationale": _comment_lines(h.rationale),
        "entry_rule": _comment_lines(h.entry_rule),
        "exit_rule": _comment_lines(h.exit_rule),
        "features": features,
        "kinds": kinds,
        "signal": signal,
        "imports_math": signal["kind"] == "zscore_reversion",
        "imports_numpy": uses_numpy,
    }
    return _ENV.get_template(TEMPLATE_NAME).render(context)


def hypothesis_sha256(h: Hypothesis) -> str:
    """Content hash of the hypothesis, independent of the order of parameter keys."""
    canonical = json.dumps(h.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _feature_context(spec: FeatureSpec) -> dict[str, Any]:
    params = _resolve(f"feature {spec.name!r} ({spec.kind})", FEATURE_PARAMS[spec.kind], spec)
    return {
        "name": spec.name,
        # The contract restricts names to [a-z0-9_], so JSON quoting is a valid literal.
        "name_literal": json.dumps(spec.name),
        "kind": spec.kind,
        "params": params,
        "summary": ", ".join(f"{k}={v}" for k, v in params.items()),
    }


def _signal_context(spec: SignalSpec) -> dict[str, Any]:
    params = _resolve(f"signal {spec.kind}", SIGNAL_PARAMS[spec.kind], spec)
    if spec.kind == "ma_crossover" and int(params["fast"]) >= int(params["slow"]):
        raise RenderError("ma_crossover: fast must be shorter than slow")
    if spec.kind == "zscore_reversion" and float(params["exit_z"]) >= float(params["entry_z"]):
        raise RenderError("zscore_reversion: exit_z must be smaller than entry_z")
    return {
        "kind": spec.kind,
        "params": params,
        "summary": ", ".join(f"{k}={v}" for k, v in params.items()),
    }


def _resolve(what: str, allowed: Mapping[str, _Param], spec: FeatureSpec | SignalSpec) -> dict[str, str]:
    """Check parameters against ``allowed`` and return them as Python literals.

    Literals are produced here, not in the template, so that nothing but a checked int,
    float or bool ever reaches the generated source.
    """
    unknown = sorted(set(spec.params) - set(allowed))
    if unknown:
        raise RenderError(f"{what}: unknown parameter(s) {', '.join(unknown)}; expected {', '.join(allowed)}")
    return {
        name: _literal(f"{what}: {name}", rule, spec.params.get(name, rule.default)) for name, rule in allowed.items()
    }


def _literal(what: str, rule: _Param, value: int | float) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RenderError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise RenderError(f"{what} must be finite, got {value!r}")
    too_low = value <= rule.minimum if rule.exclusive_minimum else value < rule.minimum
    if too_low or value > rule.maximum:
        bound = ">" if rule.exclusive_minimum else ">="
        raise RenderError(f"{what} must be {bound} {rule.minimum} and <= {rule.maximum}")
    if rule.kind is float:
        return repr(float(value))
    if float(value) != int(value):
        raise RenderError(f"{what} must be a whole number, got {value!r}")
    if rule.kind is bool:
        return repr(bool(value))
    return repr(int(value))


def _comment_lines(text: str) -> list[str]:
    """Free text as comment lines: wrapped, printable characters only.

    The text comes from a planner (possibly an LLM), so it must not be able to end the
    comment and start code; splitting on every line break Python or Unicode knows and
    dropping control characters makes each piece safe behind a ``#``.
    """
    lines: list[str] = []
    for raw in text.splitlines():
        clean = "".join(ch if ch.isprintable() else " " for ch in raw).strip()
        lines.extend(textwrap.wrap(clean, COMMENT_WIDTH - 4) or [""])
    while lines and not lines[-1]:
        lines.pop()
    return lines or ["(none given)"]
