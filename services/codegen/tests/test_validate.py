"""Validation: the allow-list names the rule each kind of bad code breaks."""

from __future__ import annotations

import pytest

from alphasaga_codegen.domain import RuleViolation, find_violations, validate_strategy

ENTRY_POINTS = """
def compute_features(bars):
    return pd.DataFrame({"ret": bars["close"].pct_change()}, index=bars.index)


def compute_signal(bars, features):
    return (features["ret"] > 0).astype("float64")
"""

GOOD = f'''"""A hand-written strategy that uses the allowed constructs."""
import math

import numpy as np
import pandas as pd
from numpy import nan

WINDOW: int = 20
LEVELS = (-1.0, 0.0, 1.0)
{ENTRY_POINTS}

def helper(x: pd.Series, *, scale: float = 1.0, names: tuple[str, ...] = ("a",)) -> pd.Series:
    values = [v * scale for v in x if not math.isnan(v)]
    squares = {{i: i**2 for i in range(3)}}
    total = 0.0
    for _ in range(10):
        total += 1
    if (n := len(values)) > 0:
        assert n >= 0, f"{{n}} values"
    smooth = x.ewm(alpha=0.5).mean().agg(["mean", "std"])
    return x.rolling(WINDOW).apply(lambda w: np.mean(w) + squares[1] + smooth.iloc[0] * nan, raw=True)
'''


def _with(snippet: str) -> str:
    return f"import numpy as np\nimport pandas as pd\n{snippet}\n{ENTRY_POINTS}"


def test_a_plain_strategy_passes() -> None:
    validate_strategy(GOOD)
    assert find_violations(GOOD) == []


@pytest.mark.parametrize(
    ("source", "rule", "mentions"),
    [
        ("import os", "import", "'os'"),
        ("from subprocess import run", "import", "'subprocess'"),
        ("import numpy.ctypeslib", "import", "numpy.ctypeslib"),
        ("from numpy import load", "attribute", "load"),
        ("from numpy import _core", "attribute", "private"),
        ("from . import x", "import", "relative"),
        ("from numpy import *", "import", "*"),
        ("def f():\n    return open('/etc/passwd')", "forbidden_call", "'open'"),
        ("def f(x):\n    return x.__class__", "attribute", "'__class__'"),
        ("def f():\n    return __import__('os')", "dunder", "'__import__'"),
        ("def f():\n    return eval('1 + 1')", "forbidden_call", "'eval'"),
        ("def f(x):\n    return getattr(x, 'y')", "forbidden_call", "'getattr'"),
        ("def f():\n    g = exec\n    return g", "forbidden_call", "'exec'"),
        ("def f(df):\n    return df.query('a > 1')", "attribute", "'query'"),
        ("def f():\n    return pd.read_csv('/etc/passwd')", "attribute", "'read_csv'"),
        ("def f(df):\n    df.to_pickle('x')", "attribute", "'to_pickle'"),
        ("def f():\n    return '{0}'.format(1)", "attribute", "'format'"),
        ("def f():\n    return pd.util._print_versions", "attribute", "'_print_versions' is private"),
        ("def f(s):\n    return s.apply('to_pickle')", "attribute", "'to_pickle'"),
        ("def f(s):\n    return s.agg(['mean', 'to_csv'])", "attribute", "'to_csv'"),
        ("def f(s):\n    return s['__class__']", "string", "'__class__'"),
        # Issue #24: what reaches pandas' name dispatch, and the evaluator's ways in.
        ("def f(s):\n    n = 'mean'\n    return s.agg(n)", "dispatch", "not 'n'"),
        ("def f(s):\n    return s.agg('me' + 'an')", "dispatch", "'me'"),
        ("def f(s):\n    return s.apply(s.name)", "dispatch", "s.name"),
        ("def f(s):\n    return s.agg(['mean', s.name])", "dispatch", "s.name"),
        ("def f(s):\n    return s.agg({'close': s.name})", "dispatch", "s.name"),
        ("def f(s):\n    return s.transform(*['mean'])", "dispatch", "*arguments"),
        ("def f(s):\n    return s.agg(**{'func': 'mean'})", "dispatch", "**"),
        ("def f(s):\n    return s.max(**{})", "dispatch", "**"),
        ("def f(s, w):\n    return s.rolling(3, win_type=w).mean()", "dispatch", "literal"),
        ("def f(s, w):\n    return s.rolling(3, 1, False, w).mean()", "dispatch", "literal"),
        ("def f(s):\n    return s.rolling(3).mean(engine=s.name)", "dispatch", "'engine'"),
        ("def f(s):\n    mean = 'max'\n    return s.agg(mean)", "dispatch", "not 'mean'"),
        ("def f(df):\n    return df.agg('mean', local_dict={})", "keyword", "local_dict"),
        ("def f(df):\n    return pd.concat([df], global_dict=1)", "keyword", "global_dict"),
        ("def f(s):\n    return s.agg('EVAL')", "attribute", "'EVAL'"),
        ("def f(df):\n    return df.pipe(len)", "attribute", "never allowed"),
        ("def f(df):\n    return df.eval('a + 1')", "attribute", "'eval'"),
        ("def f(df):\n    return df.to_parquet", "attribute", "never allowed"),
        ("def f():\n    return 'to_csv'", "string", "'to_csv'"),
        ("def f():\n    return ' Read_Pickle '", "string", "Read_Pickle"),
        ("def f():\n    return '\uff31\uff35\uff25\uff32\uff39'", "string", "runs code"),
        ("def f():\n    return 'local_dict'", "string", "local_dict"),
        ("def f():\n    return '\uff3fclass'", "string", "private"),
        ("def f():\n    return print", "name", "'print'"),
        ("def f():\n    iter = 1\n    return iter", "name", "'iter'"),
        ("def f():\n    return undefined_name", "name", "never defined"),
        ("def f():\n    return np.zeros(10**9)", "constant", "10,000,000"),
        ("def f():\n    return [0] * 20_000_000", "constant", "20000000"),
        ("def f():\n    return 2 ** 10 ** 400", "constant", "constant expression"),
        ("def f(n):\n    return f(n - 1)", "recursion", "'f'"),
        ("def f(n):\n    return g(n)\ndef g(n):\n    return f(n)", "recursion", "'f'"),
        ("def f():\n    while True:\n        pass", "node", "While"),
        ("def f():\n    np.mean = len", "module_state", "'np'"),
        ("def f():\n    pd.options = 1", "attribute", "'options'"),
        ("class A:\n    pass", "node", "ClassDef"),
        ("def f():\n    try:\n        pass\n    except Exception:\n        pass", "node", "Try"),
        ("def f():\n    global X", "node", "Global"),
        ("async def f():\n    pass", "node", "AsyncFunctionDef"),
        ("def f():\n    yield 1", "node", "Yield"),
        ("def f(x=[]):\n    return x", "node", "defaults"),
        ("def f(x: print('hi')):\n    return x", "node", "annotations"),
        ("np.mean([1.0])", "top_level", "Expr"),
        ("X = [1, 2]", "top_level", "Assign"),
        ("if True:\n    X = 1", "top_level", "If"),
        ("def f(:\n    pass", "syntax", ""),
        ("def f():\n    return 1\nreturn 2", "syntax", "outside function"),
    ],
)
def test_bad_code_is_rejected_with_the_rule_named(source: str, rule: str, mentions: str) -> None:
    with pytest.raises(RuleViolation) as caught:
        validate_strategy(_with(source))
    assert caught.value.rule == rule
    assert mentions in caught.value.detail
    assert rule in str(caught.value)


def test_the_issue_24_reproducer_is_refused_at_every_step() -> None:
    source = (
        "import numpy as np\nimport pandas as pd\n\n"
        "def compute_features(bars):\n"
        '    n = "eval"\n'
        '    bars.agg(n, 0, "@p.io.common.os.system(@c)", local_dict={"p": pd, "c": "id"})\n'
        "    return pd.DataFrame(index=bars.index)\n\n"
        "def compute_signal(bars, features):\n    return pd.Series(0.0, index=bars.index)\n"
    )
    assert {v.rule for v in find_violations(source)} == {"string", "dispatch", "keyword"}


def test_functions_written_in_the_source_may_be_dispatched() -> None:
    dispatched = (
        "def helper(x):\n    return x\n\n"
        "def uses(s):\n"
        "    a = s.agg(np.mean)\n"
        "    b = s.apply(helper)\n"
        "    c = s.agg(['mean', len, lambda w: w.max()])\n"
        "    d = s.agg({'close': 'mean', 'open': np.median})\n"
        "    e = s.rolling(3, win_type='triang').mean()\n"
        "    return s.transform(pd.isna), a, b, c, d, e\n"
    )
    assert find_violations(_with(dispatched)) == []


def test_the_allow_list_holds_none_of_the_names_that_are_never_allowed() -> None:
    from alphasaga_codegen.domain.validate import ALLOWED_ATTRIBUTES, IN_MEMORY_CONVERSIONS, NEVER_NAMES

    assert {name for name in ALLOWED_ATTRIBUTES if NEVER_NAMES.fullmatch(name)} <= IN_MEMORY_CONVERSIONS


def test_violations_carry_the_line_number() -> None:
    source = _with("def f():\n    return eval('1')")
    with pytest.raises(RuleViolation) as caught:
        validate_strategy(source)
    assert caught.value.line == 4  # two imports, def, then the eval


def test_every_violation_can_be_listed_in_line_order() -> None:
    source = _with("import os\ndef f(x):\n    return open(x.__class__)")
    rules = [v.rule for v in find_violations(source)]
    assert rules == ["import", "forbidden_call", "attribute"]


@pytest.mark.parametrize(
    ("source", "mentions"),
    [
        ("import pandas as pd\ndef compute_signal(bars, features):\n    return bars", "'compute_features'"),
        (
            "import pandas as pd\ndef compute_features(bars):\n    return bars\n"
            "def compute_signal(bars):\n    return bars",
            "exactly 2",
        ),
        ("import pandas as pd\n" + ENTRY_POINTS + ENTRY_POINTS, "more than once"),
    ],
)
def test_entry_points_are_required(source: str, mentions: str) -> None:
    with pytest.raises(RuleViolation) as caught:
        validate_strategy(source)
    assert caught.value.rule == "entry_points"
    assert mentions in caught.value.detail


def test_oversized_source_is_rejected_before_parsing() -> None:
    with pytest.raises(RuleViolation) as caught:
        validate_strategy("#" * 300_000)
    assert caught.value.rule == "size"
