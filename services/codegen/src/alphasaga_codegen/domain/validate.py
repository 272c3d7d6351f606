"""Static checks on strategy source before it is ever executed.

The checker is an allow-list of what strategy code may touch: node types, modules,
builtins and attribute names. Anything not on a list is refused, so a construct or a
library internal nobody thought of is refused until someone decides it is harmless.
The sandbox is the containment (``docs/security.md``); this layer keeps hostile or
sloppy code out of it and gives the planner a precise reason.

Attributes are checked by name, whatever object they are read from: Python cannot tell
statically what ``x`` is in ``x.y``, so a name is allowed only if it is harmless on
every numpy, pandas or math object that has it. That is why ``format``, ``eval``,
``query``, ``view``, ``ctypes``, ``data``, ``base`` and every ``read_*``/``to_*`` but
``to_numpy`` are missing, and why nothing starting with ``_`` can be allowed: private
module attributes are how ``pd.util._print_versions.os`` reaches the host.

Rules (the ``rule`` of the ``RuleViolation`` raised):

==================  ===================================================================
``syntax``          does not parse or compile, or is nested too deeply
``size``            longer than ``MAX_SOURCE_CHARS``
``node``            a construct outside the allow-list: classes, ``try``/``with``,
                    ``while``, ``global``/``nonlocal``, ``del``, async, generators,
                    ``match``, decorators, non-constant parameter defaults
``import``          anything but ``import numpy|pandas|math [as x]`` and ``from numpy|
                    pandas|math import <allowed name>``
``dunder``          any identifier starting with ``__`` (``__builtins__``, ``__import__``)
``forbidden_call``  a name in ``FORBIDDEN_NAMES`` (``eval``, ``exec``, ``compile``,
                    ``open``, ``getattr``, ``vars``, ``globals``…), called, referenced
                    or bound, whatever its spelling (Python folds Unicode look-alikes
                    to the same identifier before we see it)
``name``            any other builtin outside ``ALLOWED_BUILTINS``, or a name the
                    strategy never defines
``attribute``       an attribute outside ``ALLOWED_ATTRIBUTES``, any attribute starting
                    with ``_``, ``eval``, ``query``, ``pipe`` and every ``read_*`` and
                    ``to_*`` but the in-memory conversions; or a method name written as
                    a string for ``apply``/``agg``/``aggregate``/``transform`` (which look
                    methods up by name) that is not an allowed attribute
``dispatch``        anything else given as the function of ``apply``/``agg``/
                    ``aggregate``/``transform``: only a lambda, a function the strategy
                    defines, an allowed builtin, a module's function (``np.mean``) or a
                    literal method name, alone or in a list, tuple or dict, never a name
                    held in a variable, built at run time or unpacked with ``*``; a
                    window's ``win_type`` or ``method`` and any ``engine`` not written
                    as a literal; ``**`` unpacking in any call
``keyword``         ``local_dict``, ``global_dict`` or ``resolvers``: they hand objects
                    to pandas' expression evaluator
``string``          a string constant starting with ``_`` or containing ``__``, or one
                    that names ``eval``, ``query``, ``pipe``, a ``read_*`` or a ``to_*``
                    or one of the keywords above, in any case or Unicode spelling: a
                    name smuggled as data for something that looks names up
``constant``        a number (or constant expression such as ``10**12``) larger than
                    ``MAX_CONSTANT``: sizes and loop counts come from the data
``recursion``       a function that calls itself, directly or through others
``module_state``    assigning to an attribute of an imported module (monkey-patching)
``top_level``       module level holds something other than a docstring, imports,
                    function definitions and assignments of immutable constants
``entry_points``    ``compute_features(bars)`` or ``compute_signal(bars, features)`` is
                    missing, defined twice, or has the wrong parameters
==================  ===================================================================

Allowed on purpose: ``lambda``, comprehensions, ``for`` loops, ``assert``, ``raise``,
f-strings (their expressions are checked like any other), the walrus operator.

Why ``dispatch`` is strict: pandas turns a string given to ``agg`` and its kin into
``getattr(frame, name)``, so a name that reaches it at run time (``n = "ev" + "al"``,
``"x_"[1] * 2``) is a call the checker never saw. Only names visible in the source as
literals are checked, so only literals may reach those arguments.
"""

from __future__ import annotations

import ast
import builtins
import math
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .errors import RuleViolation

MAX_SOURCE_CHARS = 200_000
# Larger than any window or threshold a template writes (windows stop at 100,000).
MAX_CONSTANT = 10_000_000
ALLOWED_MODULES = frozenset({"numpy", "pandas", "math"})
ENTRY_POINTS = {"compute_features": 1, "compute_signal": 2}

FORBIDDEN_NAMES = frozenset(
    {
        # Code execution, file access, reflection, interaction.
        "eval", "exec", "open", "compile", "__import__", "getattr", "setattr", "globals",
        "locals", "vars", "input", "breakpoint", "delattr", "hasattr", "dir", "type",
        "object", "super", "memoryview", "help", "exit", "quit", "classmethod",
        "staticmethod", "property", "__builtins__", "builtins", "importlib",
    }
)  # fmt: skip

ALLOWED_BUILTINS = frozenset(
    {
        "abs", "all", "any", "bool", "dict", "divmod", "enumerate", "float", "int",
        "isinstance", "len", "list", "max", "min", "pow", "range", "reversed", "round",
        "set", "slice", "sorted", "str", "sum", "tuple", "zip", "frozenset",
        "ArithmeticError", "TypeError", "ValueError", "ZeroDivisionError",
    }
)  # fmt: skip
_OTHER_BUILTINS = frozenset(dir(builtins)) - ALLOWED_BUILTINS - FORBIDDEN_NAMES

ALLOWED_ATTRIBUTES = frozenset(
    {
        # numpy: elementwise maths, reductions, constructors, constants, dtypes.
        "abs", "absolute", "all", "any", "arange", "argmax", "argmin", "argsort", "around",
        "array", "asarray", "average", "bool_", "ceil", "clip", "column_stack", "concatenate",
        "convolve", "copysign", "corrcoef", "cos", "count_nonzero", "cov", "cumprod", "cumsum",
        "diff", "divide", "dot", "e", "empty", "empty_like", "exp", "expm1", "fabs", "float32",
        "float64", "floor", "fmax", "fmin", "full", "full_like", "hstack", "hypot", "inf",
        "int32", "int64", "interp", "isclose", "isfinite", "isinf", "isnan", "linspace",
        "log", "log10", "log1p", "log2", "logical_and", "logical_not", "logical_or", "max",
        "maximum", "mean", "median", "min", "minimum", "multiply", "nan", "nan_to_num",
        "nanmax", "nanmean", "nanmedian", "nanmin", "nanpercentile", "nanquantile",
        "nanstd", "nansum", "nanvar", "newaxis", "nonzero", "ones", "ones_like", "percentile",
        "pi", "power", "prod", "quantile", "repeat", "roll", "round", "searchsorted",
        "select", "sign", "sin", "sort", "sqrt", "square", "stack", "std", "subtract",
        "sum", "tan", "tanh", "tile", "unique", "var", "vstack", "where", "zeros",
        "zeros_like",
        # ndarray attributes.
        "T", "astype", "copy", "dtype", "fill", "flatten", "item", "ndim", "ravel",
        "reshape", "shape", "size", "tolist",
        # math (beyond the names above).
        "erf", "fsum", "isqrt",
        # pandas: constructors and helpers.
        "DataFrame", "Series", "NA", "Timestamp", "Timedelta", "concat", "isna", "notna",
        "isnull", "notnull", "to_datetime",
        # Series / DataFrame / Index / window objects.
        "add", "agg", "aggregate", "apply", "at", "between", "bfill", "columns", "combine_first",
        "count", "cummax", "cummin", "day", "dayofweek", "div", "drop", "dropna", "dtypes",
        "eq", "equals", "ewm", "expanding", "ffill", "fillna", "floordiv", "ge", "gt",
        "head", "iat", "idxmax", "idxmin", "iloc", "index", "interpolate", "isin", "kurt",
        "le", "loc", "lt", "mask", "mod", "month", "mul", "name", "ne", "nunique",
        "pct_change", "pow", "radd", "rank", "rdiv", "reindex", "rename", "replace",
        "rmul", "rolling", "rsub", "shift", "skew", "sort_index", "sort_values", "sub",
        "tail", "to_frame", "to_list", "to_numpy", "to_series", "transform", "truediv",
        "value_counts", "values", "year", "corr",
    }
)  # fmt: skip
# Methods that accept a method *name* as a string and look it up on the object, and
# where that argument is: its position and its keywords.
DISPATCHERS: dict[str, tuple[int, frozenset[str]]] = {
    method: (0, frozenset({"func", "arg"})) for method in ("apply", "agg", "aggregate", "transform")
}
# Arguments that pick an implementation by name (scipy's window functions, numba):
# literals only.
NAMED_CHOICES: dict[str, tuple[int | None, frozenset[str]]] = {
    "rolling": (3, frozenset({"win_type", "method"})),
    "interpolate": (0, frozenset({"method"})),
}
LITERAL_KEYWORDS = frozenset({"engine", "engine_kwargs"})
# Keywords through which pandas.eval and DataFrame.query/eval reach arbitrary objects.
REFUSED_KEYWORDS = frozenset({"local_dict", "global_dict", "resolvers"})
# Names that run code, or read or write files, whatever object has them: refused as
# attributes (but the in-memory conversions) and as strings, in any case or spelling.
NEVER_NAMES = re.compile(r"eval|query|pipe|(?:to|read)_\w*|local_dict|global_dict|resolvers", re.ASCII)
IN_MEMORY_CONVERSIONS = frozenset({"to_numpy", "to_list", "to_frame", "to_series", "to_datetime"})

ALLOWED_NODES: frozenset[type[ast.AST]] = frozenset(
    {
        ast.Module, ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Return, ast.If,
        ast.For, ast.Break, ast.Continue, ast.Pass, ast.FunctionDef, ast.Import,
        ast.ImportFrom, ast.Assert, ast.Raise,
        ast.BoolOp, ast.NamedExpr, ast.BinOp, ast.UnaryOp, ast.Lambda, ast.IfExp, ast.Dict,
        ast.Set, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.Compare,
        ast.Call, ast.FormattedValue, ast.JoinedStr, ast.Constant, ast.Attribute,
        ast.Subscript, ast.Starred, ast.Name, ast.List, ast.Tuple, ast.Slice,
        ast.Load, ast.Store,
        ast.And, ast.Or, ast.Add, ast.Sub, ast.Mult, ast.MatMult, ast.Div, ast.Mod, ast.Pow,
        ast.LShift, ast.RShift, ast.BitOr, ast.BitXor, ast.BitAnd, ast.FloorDiv,
        ast.Invert, ast.Not, ast.UAdd, ast.USub,
        ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Is, ast.IsNot, ast.In,
        ast.NotIn,
        ast.comprehension, ast.arguments, ast.arg, ast.keyword, ast.alias,
    }
)  # fmt: skip

# Nodes allowed in annotations, which run at definition time: type expressions only.
_TYPE_EXPRESSION_NODES: tuple[type[ast.AST], ...] = (
    ast.Name, ast.Attribute, ast.Subscript, ast.Constant, ast.Tuple, ast.List, ast.BinOp,
    ast.BitOr, ast.Load,
)  # fmt: skip


def validate_strategy(source: str) -> None:
    """Raise the first ``RuleViolation`` (by line) in ``source``; return if it is clean."""
    violations = find_violations(source)
    if violations:
        raise violations[0]


@dataclass(frozen=True)
class _Scope:
    """What names stand for wherever they appear, when nothing rebinds them.

    ``modules``: import aliases; ``callables``: functions the strategy defines, names it
    imports from a module, and allowed builtins. A name bound anywhere else (assigned,
    a parameter, a loop target) is in neither, whatever it also is.
    """

    modules: frozenset[str]
    callables: frozenset[str]

    @classmethod
    def of(cls, tree: ast.Module) -> _Scope:
        modules, imported, defined, rebound = set(), set(), set(), set()
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                defined.add(node.name)
            elif isinstance(node, ast.Import):
                modules |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported |= {alias.asname or alias.name for alias in node.names}
            elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
                rebound.add(node.id)
            elif isinstance(node, ast.arg):
                rebound.add(node.arg)
        callables = (defined | imported | ALLOWED_BUILTINS) - rebound - modules
        return cls(modules=frozenset(modules - rebound - defined - imported), callables=frozenset(callables))

    def is_module_function(self, node: ast.expr) -> bool:
        """``np.mean``, ``pd.Series.mean``: an attribute chain rooted at a module."""
        while isinstance(node, ast.Attribute):
            node = node.value
        return isinstance(node, ast.Name) and node.id in self.modules


def find_violations(source: str) -> list[RuleViolation]:
    """Every rule violation in ``source``, ordered by line, for a complete report."""
    if len(source) > MAX_SOURCE_CHARS:
        return [RuleViolation("size", f"{len(source)} characters; at most {MAX_SOURCE_CHARS}")]
    try:
        tree = ast.parse(source, filename="<strategy>", mode="exec")
        # Compiling catches what the parser lets through (return outside a function, …).
        compile(tree, "<strategy>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        return [RuleViolation("syntax", exc.msg, exc.lineno)]
    except (RecursionError, MemoryError, ValueError) as exc:
        return [RuleViolation("syntax", f"cannot compile: {type(exc).__name__}")]
    try:
        found = [
            *_check_nodes(tree, _Scope.of(tree)),
            *_check_names(tree),
            *_check_top_level(tree),
            *_check_module_state(tree),
            *_check_recursion(tree),
            *_check_entry_points(tree),
        ]
    except RecursionError:
        return [RuleViolation("syntax", "expressions are nested too deeply")]
    # Violations without a line (a missing entry point) go last.
    ordered = sorted(enumerate(found), key=lambda p: (p[1].line is None, p[1].line or 0, p[0]))
    return [violation for _, violation in ordered]


# Complexity 12: one rule per kind of node, checked in one walk; it reads as the list of
# rules it is, and each rule is a function of its own.
def _check_nodes(tree: ast.Module, scope: _Scope) -> Iterator[RuleViolation]:
    for node in ast.walk(tree):
        line = getattr(node, "lineno", None)
        if type(node) not in ALLOWED_NODES:
            yield RuleViolation("node", f"{type(node).__name__} is not allowed", line)
            continue
        for name in _identifiers(node):
            yield from _check_identifier(name, line)
        if isinstance(node, ast.Attribute):
            yield from _check_attribute(node.attr, line)
        if isinstance(node, ast.Constant):
            yield from _check_constant(node.value, line)
        if isinstance(node, ast.BinOp) and _magnitude(node) > MAX_CONSTANT:
            yield RuleViolation("constant", f"a constant expression above {MAX_CONSTANT:,}", line)
        if isinstance(node, ast.Call):
            yield from _check_call(node, scope)
        if isinstance(node, ast.FunctionDef) and node.decorator_list:
            yield RuleViolation("node", f"decorator on {node.name!r} is not allowed", line)
        if isinstance(node, ast.FunctionDef | ast.Lambda):
            yield from _check_arguments(node.args, line)
        if isinstance(node, ast.FunctionDef) and node.returns is not None:
            yield from _check_annotation(node.returns)
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield from _check_import(node)


def _identifiers(node: ast.AST) -> Iterator[str]:
    """Names a node binds or reads, wherever Python keeps them (not attributes)."""
    if isinstance(node, ast.Name):
        yield node.id
    elif isinstance(node, ast.FunctionDef):
        yield node.name
    elif isinstance(node, ast.arg):
        yield node.arg
    elif isinstance(node, ast.keyword):
        # ``arg`` is None for ``**kwargs`` unpacking.
        yield from [node.arg] if node.arg is not None else []
    elif isinstance(node, ast.alias) and node.asname is not None:
        yield node.asname


def _check_identifier(name: str, line: int | None) -> Iterator[RuleViolation]:
    if name.startswith("__"):
        yield RuleViolation("dunder", f"{name!r} is not allowed", line)
    elif name in FORBIDDEN_NAMES:
        yield RuleViolation("forbidden_call", f"{name!r} is not allowed", line)
    elif name in _OTHER_BUILTINS:
        # Refused even when bound locally: another scope would still find the builtin.
        yield RuleViolation("name", f"builtin {name!r} is not allowed", line)


def _check_attribute(name: str, line: int | None) -> Iterator[RuleViolation]:
    if name.startswith("_"):
        yield RuleViolation("attribute", f"attribute {name!r} is private", line)
    elif _never(name) and name not in IN_MEMORY_CONVERSIONS:
        yield RuleViolation("attribute", f"attribute {name!r} is never allowed: it runs code or touches files", line)
    elif name not in ALLOWED_ATTRIBUTES:
        yield RuleViolation("attribute", f"attribute {name!r} is not allowed", line)


def _never(text: str) -> bool:
    """Whether ``text`` spells one of ``NEVER_NAMES``, in any case or Unicode form."""
    return NEVER_NAMES.fullmatch(_folded(text)) is not None


def _folded(text: str) -> str:
    """``text`` as Python would read it as an identifier, caseless and trimmed."""
    return unicodedata.normalize("NFKC", text).casefold().strip()


def _check_constant(value: object, line: int | None) -> Iterator[RuleViolation]:
    if isinstance(value, str) and (_folded(value).startswith("_") or "__" in _folded(value)):
        yield RuleViolation("string", f"string {value[:40]!r} looks like a private name", line)
    elif isinstance(value, str) and _never(value):
        yield RuleViolation("string", f"string {value[:40]!r} names what runs code or touches files", line)
    elif isinstance(value, int | float) and not isinstance(value, bool) and abs(value) > MAX_CONSTANT:
        yield RuleViolation("constant", f"{value!r} is above {MAX_CONSTANT:,}", line)


def _magnitude(node: ast.expr) -> float:
    """An upper bound on a constant expression's size, or 0 when it is not constant.

    Computed on logarithms, so ``10**10**10`` is judged without being evaluated.
    """
    log = _log_magnitude(node)
    return 0.0 if log is None else math.inf if log > 300 else 10.0**log


def _log_magnitude(node: ast.expr) -> float | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return math.log10(abs(node.value)) if node.value else -math.inf
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        return _log_magnitude(node.operand)
    if not isinstance(node, ast.BinOp):
        return None
    left, right = _log_magnitude(node.left), _log_magnitude(node.right)
    if left is None or right is None:
        return None
    if isinstance(node.op, ast.Mult):
        return left + right
    if isinstance(node.op, ast.Add | ast.Sub):
        return max(left, right) + math.log10(2)
    if isinstance(node.op, ast.Pow):
        return left * float(10.0 ** min(right, 300.0)) if left > 0 else 0.0
    if isinstance(node.op, ast.LShift):
        return left + float(10.0 ** min(right, 300.0)) * math.log10(2)
    return max(left, right)


def _check_call(node: ast.Call, scope: _Scope) -> Iterator[RuleViolation]:
    """The ``dispatch`` and ``keyword`` rules, for one call."""
    line = node.lineno
    yield from _check_keywords(node)
    method = node.func.attr if isinstance(node.func, ast.Attribute) else ""
    if method in DISPATCHERS:
        if any(isinstance(argument, ast.Starred) for argument in node.args):
            yield RuleViolation("dispatch", f"{method} with *arguments is not allowed", line)
        for argument in _arguments(node, *DISPATCHERS[method]):
            yield from _check_function(method, argument, scope, line)
    if method in NAMED_CHOICES:
        for argument in _arguments(node, *NAMED_CHOICES[method]):
            if not isinstance(argument, ast.Constant):
                yield RuleViolation("dispatch", f"{method} must choose its implementation with a literal", line)


def _check_keywords(node: ast.Call) -> Iterator[RuleViolation]:
    for keyword in node.keywords:
        if keyword.arg is None:
            yield RuleViolation("dispatch", "keyword arguments unpacked with ** are not allowed", node.lineno)
        elif keyword.arg in REFUSED_KEYWORDS:
            yield RuleViolation("keyword", f"{keyword.arg!r} hands objects to pandas' evaluator", node.lineno)
        elif keyword.arg in LITERAL_KEYWORDS and not isinstance(keyword.value, ast.Constant):
            yield RuleViolation("dispatch", f"{keyword.arg!r} must be written as a literal", node.lineno)


def _arguments(node: ast.Call, position: int | None, keywords: frozenset[str]) -> list[ast.expr]:
    """The arguments of ``node`` at ``position`` or named by one of ``keywords``."""
    found = [k.value for k in node.keywords if k.arg in keywords]
    if position is not None and len(node.args) > position:
        found.append(node.args[position])
    return found


def _check_function(method: str, argument: ast.expr, scope: _Scope, line: int) -> Iterator[RuleViolation]:
    """``s.agg(x)`` calls ``getattr(s, x)`` when ``x`` is a string: only what the source
    shows as a function, or a literal allowed name, may be ``x``."""
    if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
        if argument.value not in ALLOWED_ATTRIBUTES or _never(argument.value):
            yield RuleViolation("attribute", f"{method} by name {argument.value!r} is not allowed", line)
        return
    if isinstance(argument, ast.List | ast.Tuple):
        for element in argument.elts:
            yield from _check_function(method, element, scope, line)
        return
    if isinstance(argument, ast.Dict):
        if any(key is None for key in argument.keys):
            yield RuleViolation("dispatch", "dictionaries unpacked with ** are not allowed here", line)
        for value in argument.values:
            yield from _check_function(method, value, scope, line)
        return
    named = isinstance(argument, ast.Name) and argument.id in scope.callables
    if not (isinstance(argument, ast.Lambda) or named or scope.is_module_function(argument)):
        shown = ast.unparse(argument)[:40]
        yield RuleViolation(
            "dispatch",
            f"{method} needs a lambda, a function or a literal method name, not {shown!r}",
            line,
        )


def _check_import(node: ast.Import | ast.ImportFrom) -> Iterator[RuleViolation]:
    line = node.lineno
    if isinstance(node, ast.ImportFrom):
        module = node.module or ""
        if node.level:
            yield RuleViolation("import", "relative imports are not allowed", line)
            return
        if module not in ALLOWED_MODULES:
            yield RuleViolation("import", f"module {module!r} is not allowed", line)
            return
        for alias in node.names:
            if alias.name == "*":
                yield RuleViolation("import", f"'from {module} import *' is not allowed", line)
            else:
                yield from _check_identifier(alias.name, line)
                yield from _check_attribute(alias.name, line)
        return
    for alias in node.names:
        if alias.name not in ALLOWED_MODULES:
            yield RuleViolation("import", f"module {alias.name!r} is not allowed", line)


def _check_names(tree: ast.Module) -> Iterator[RuleViolation]:
    """Every name read must be bound by the strategy or be an allowed builtin."""
    bound = set(ALLOWED_BUILTINS)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, ast.FunctionDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add(node.asname or node.name.split(".")[0])
    # Dunders, forbidden names and other builtins have their own rules.
    known = bound | FORBIDDEN_NAMES | _OTHER_BUILTINS
    reads = (n for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load))
    for node in reads:
        if node.id not in known and not node.id.startswith("__"):
            yield RuleViolation("name", f"{node.id!r} is never defined", node.lineno)


def _check_arguments(args: ast.arguments, line: int | None) -> Iterator[RuleViolation]:
    """Defaults must be immutable constants: a mutable default is state shared by calls."""
    for default in [*args.defaults, *(d for d in args.kw_defaults if d is not None)]:
        if not _is_constant(default):
            yield RuleViolation("node", "parameter defaults must be constants", line)
    for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
        if arg is not None and arg.annotation is not None:
            yield from _check_annotation(arg.annotation)


def _check_annotation(annotation: ast.expr) -> Iterator[RuleViolation]:
    """Annotations are evaluated when the function is defined; keep them inert."""
    for node in ast.walk(annotation):
        if not isinstance(node, _TYPE_EXPRESSION_NODES):
            yield RuleViolation("node", "annotations must be plain type expressions", annotation.lineno)
            return


def _is_constant(node: ast.expr) -> bool:
    """A literal that cannot be mutated: numbers, strings, None, tuples of those."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        return isinstance(node.operand, ast.Constant)
    if isinstance(node, ast.Tuple):
        return all(_is_constant(element) for element in node.elts)
    return False


def _check_top_level(tree: ast.Module) -> Iterator[RuleViolation]:
    """Importing the module must do nothing but bind names."""
    for index, statement in enumerate(tree.body):
        line = statement.lineno
        if isinstance(statement, ast.Import | ast.ImportFrom | ast.FunctionDef):
            continue
        if index == 0 and _is_docstring(statement):
            continue
        if isinstance(statement, ast.Assign):
            targets_ok = all(isinstance(t, ast.Name) for t in statement.targets)
            if targets_ok and _is_constant(statement.value):
                continue
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and statement.value is not None
            and _is_constant(statement.value)
        ):
            # Module-level annotations are evaluated at import, unlike local ones.
            yield from _check_annotation(statement.annotation)
            continue
        yield RuleViolation(
            "top_level",
            f"{type(statement).__name__} at module level; only a docstring, imports, "
            "function definitions and constant assignments are allowed",
            line,
        )


def _is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def _check_module_state(tree: ast.Module) -> Iterator[RuleViolation]:
    """Reject ``np.x = …`` and friends: patching a library changes every later caller."""
    module_names = {
        (alias.asname or alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets: Iterable[ast.expr] = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        else:
            continue
        for target in _flatten_targets(targets):
            root = _attribute_root(target)
            if root is not None and root in module_names:
                yield RuleViolation("module_state", f"assigning to an attribute of {root!r}", node.lineno)


def _flatten_targets(targets: Iterable[ast.expr]) -> Iterator[ast.expr]:
    for target in targets:
        if isinstance(target, ast.Tuple | ast.List):
            yield from _flatten_targets(target.elts)
        elif isinstance(target, ast.Starred):
            yield from _flatten_targets([target.value])
        else:
            yield target


def _attribute_root(target: ast.expr) -> str | None:
    """``pd`` for ``pd.Series.x`` or ``pd.options["a"]``; None for a plain name."""
    if not isinstance(target, ast.Attribute | ast.Subscript):
        return None
    node: ast.expr = target
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _check_recursion(tree: ast.Module) -> Iterator[RuleViolation]:
    """Refuse call cycles among the strategy's own functions: recursion can run for ever
    (``f(n - 1) + f(n - 1)``) and is never needed on bars."""
    bodies: dict[str, tuple[ast.AST, int]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            bodies[node.name] = (node, node.lineno)
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    bodies[target.id] = (node.value, node.lineno)
    calls = {
        name: {inner.id for inner in ast.walk(body) if isinstance(inner, ast.Name) and inner.id in bodies}
        for name, (body, _) in bodies.items()
    }
    for name, (_, line) in sorted(bodies.items(), key=lambda item: item[1][1]):
        if _reaches(calls, name, name):
            yield RuleViolation("recursion", f"{name!r} calls itself", line)


def _reaches(calls: dict[str, set[str]], start: str, goal: str) -> bool:
    seen: set[str] = set()
    pending = list(calls.get(start, ()))
    while pending:
        current = pending.pop()
        if current == goal:
            return True
        if current not in seen:
            seen.add(current)
            pending.extend(calls.get(current, ()))
    return False


def _check_entry_points(tree: ast.Module) -> Iterator[RuleViolation]:
    defined: dict[str, list[ast.FunctionDef]] = {}
    for statement in tree.body:
        if isinstance(statement, ast.FunctionDef):
            defined.setdefault(statement.name, []).append(statement)
    for name, arity in ENTRY_POINTS.items():
        definitions = defined.get(name, [])
        if not definitions:
            yield RuleViolation("entry_points", f"module-level function {name!r} is missing")
            continue
        if len(definitions) > 1:
            yield RuleViolation("entry_points", f"{name!r} is defined more than once", definitions[1].lineno)
        args = definitions[0].args
        positional = [*args.posonlyargs, *args.args]
        required = len(positional) - len(args.defaults)
        required_keywords = [a for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is None]
        if len(positional) < arity or required > arity or required_keywords:
            yield RuleViolation(
                "entry_points",
                f"{name!r} must accept exactly {arity} positional argument(s)",
                definitions[0].lineno,
            )
