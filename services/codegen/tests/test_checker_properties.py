"""The checker as a parser, under generated input: every variation of the known bypasses
of pandas' name dispatch (issue #24) is refused, and the same programs with a plain
allowed method name are not, so the refusals come from the spelling and nothing else.

A bypass is a method name (``eval``, ``query``, ``pipe``, a writer, a reader, a dunder)
spelled so that it only exists at run time, handed to ``agg``, ``aggregate``, ``apply``
or ``transform`` by some route (directly, through a variable, a keyword, a container,
``*``/``**``, a helper, a loop…), with or without the evaluator's keywords.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphasaga_codegen.domain import find_violations

DANGEROUS = (
    "eval", "query", "pipe", "to_csv", "to_pickle", "to_parquet", "to_sql", "read_csv",
    "read_pickle", "__class__", "__globals__", "__init__", "__subclasses__",
)  # fmt: skip
HARMLESS = ("mean", "std", "max", "min", "sum", "median")
DISPATCHERS = ("agg", "aggregate", "apply", "transform")
RECEIVERS = ("bars", "bars['close']", "bars.rolling(3)", "bars['close'].ewm(alpha=0.5)", "bars.expanding()")
# Further arguments, positional and keyword, that the dispatched method would receive.
EXTRAS = (
    ("", ""),
    (", 0", ""),
    (', 0, "@p.io.common.os.system(@c)"', ', local_dict={"p": pd, "c": "id"}'),
    (", 0, 'x > 1'", ", global_dict={}"),
    (", 0, f'/tmp/out'", ""),
)
# Every way to get a value to the dispatched argument; {call} is ``receiver.method``.
ROUTES = {
    "direct": "    {call}({expr}{extra})",
    "variable": "    n = {expr}\n    {call}(n{extra})",
    "keyword": "    {call}(func={expr}{keywords})",
    "list": "    {call}([{expr}]{extra})",
    "tuple": "    {call}(({expr},){extra})",
    "dict": "    {call}({{'close': {expr}}}{extra})",
    "star": "    {call}(*[{expr}]{extra})",
    "kwargs": "    {call}(**{{'func': {expr}}})",
    "walrus": "    {call}((n := {expr}){extra})",
    "helper": "    {call}(pick(){extra})",
    "lambda": "    {call}((lambda: {expr})(){extra})",
    "loop": "    for n in [{expr}]:\n        {call}(n{extra})",
    "comprehension": "    [{call}(n{extra}) for n in [{expr}]]",
    "subscript": "    {call}(names[0]{extra})",
}
MODULE = (
    "import numpy as np\nimport pandas as pd\n\n\n"
    "def pick():\n    return {expr}\n\n\n"
    "def compute_features(bars):\n    names = [{expr}]\n{body}\n    return pd.DataFrame(index=bars.index)\n\n\n"
    "def compute_signal(bars, features):\n    return pd.Series(0.0, index=bars.index)\n"
)
BODY_LINE = 11  # the first line of {body} in MODULE
FULLWIDTH = {chr(c): chr(c + 0xFEE0) for c in range(ord("a"), ord("z") + 1)} | {"_": "\uff3f"}


@st.composite
def spellings(draw: st.DrawFn, name: str) -> str:
    """An expression that is ``name`` (or a look-alike of it) once it runs."""
    cut = draw(st.integers(min_value=1, max_value=max(1, len(name) - 1)))
    head, tail = name[:cut], name[cut:]
    underscores = " + ".join('"x_"[1]' if c == "_" else repr(c) for c in name)
    return draw(
        st.sampled_from(
            [
                repr(name),
                repr(name.upper()),
                repr(name.title()),
                repr(f" {name} "),
                repr("".join(FULLWIDTH.get(c, c) for c in name)),
                f"{head!r} + {tail!r}",
                f'f"{{{head!r}}}{tail}"',
                f"{('x' + name)!r}[1:]",
                f"{name[::-1]!r}[::-1]",
                underscores,
                f"[{name!r}][0]",
                f"{{'k': {name!r}}}['k']",
                f"({name!r} if len('x') else 'mean')",
                f"{head!r} * 1 + {tail!r}",
            ]
        )
    )


def module(expr: str, route: str, receiver: str, method: str, extra: tuple[str, str]) -> str:
    positional, keywords = extra
    call = f"{receiver}.{method}"
    body = ROUTES[route].format(call=call, expr=expr, extra=positional + keywords, keywords=keywords)
    return MODULE.format(expr=expr, body=body)


@st.composite
def bypasses(draw: st.DrawFn) -> str:
    expr = draw(st.sampled_from(DANGEROUS).flatmap(spellings))
    return module(
        expr,
        draw(st.sampled_from(sorted(ROUTES))),
        draw(st.sampled_from(RECEIVERS)),
        draw(st.sampled_from(DISPATCHERS)),
        draw(st.sampled_from(EXTRAS)),
    )


@st.composite
def plain_calls(draw: st.DrawFn) -> str:
    """The same scaffolding with an allowed name written as a literal: nothing to refuse."""
    return module(
        repr(draw(st.sampled_from(HARMLESS))),
        draw(st.sampled_from(["direct", "keyword", "list", "tuple", "dict"])),
        draw(st.sampled_from(RECEIVERS)),
        draw(st.sampled_from(DISPATCHERS)),
        draw(st.sampled_from(EXTRAS[:2])),
    )


PROPERTY = settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(bypasses())
def test_every_variation_of_a_known_bypass_is_refused(source: str) -> None:
    compile(source, "<generated>", "exec")  # a real program: refused for what it does
    violations = find_violations(source)
    assert violations, source
    assert "syntax" not in {violation.rule for violation in violations}
    # The call that dispatches is refused itself, not only the evaluator's keywords beside it.
    at_the_call = {v.rule for v in violations if v.line is not None and v.line >= BODY_LINE} - {"keyword"}
    assert at_the_call, (violations, source)


@PROPERTY
@given(plain_calls())
def test_the_same_programs_with_a_literal_allowed_name_pass(source: str) -> None:
    assert find_violations(source) == [], source
