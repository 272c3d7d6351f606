"""Static checks on strategy source before it is ever executed.

The checks are an allow-list over the AST: every node type must be one we expect in
plain numeric code, so a construct added to Python later is rejected until someone
decides it is harmless. The sandbox is the real containment; this layer keeps obviously
hostile or sloppy code out of it and gives the planner a precise reason.

Rules (the ``rule`` of the ``RuleViolation`` raised):

==================  ===================================================================
``syntax``          does not parse or compile, or is nested too deeply
``size``            longer than ``MAX_SOURCE_CHARS``
``node``            a construct outside the allow-list: classes, ``try``/``with``,
                    ``global``/``nonlocal``, ``del``, async, generators (``yield``),
                    ``match``, decorators
``import``          imports anything but numpy, pandas, math (or their submodules), a
                    relative import, or ``import *``
``dunder``          any identifier or attribute starting with ``__``
``forbidden_call``  the names in ``FORBIDDEN_NAMES`` (``eval``, ``open``, ``getattr``…),
                    whether called or merely referenced
``forbidden_attr``  library attributes that read or write files, evaluate strings or
                    reach raw memory (``read_csv``, ``to_pickle``, ``np.load``,
                    ``DataFrame.eval``, ``str.format``…)
``module_state``    assigning to an attribute of an imported module (monkey-patching)
``top_level``       module level holds something other than a docstring, imports,
                    function definitions and assignments of immutable constants
``entry_points``    ``compute_features(bars)`` or ``compute_signal(bars, features)`` is
                    missing, defined twice, or has the wrong parameters
==================  ===================================================================

Allowed on purpose: ``lambda``, comprehensions, ``assert``, ``raise``, ``while`` (the
sandbox bounds CPU time), f-strings, the walrus operator.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator

from .errors import RuleViolation

MAX_SOURCE_CHARS = 200_000
ALLOWED_MODULES = frozenset({"numpy", "pandas", "math"})
ENTRY_POINTS = {"compute_features": 1, "compute_signal": 2}

FORBIDDEN_NAMES = frozenset(
    {
        # Named in the design: code execution, file access, reflection, interaction.
        "eval", "exec", "open", "compile", "__import__", "getattr", "setattr", "globals",
        "locals", "vars", "input", "breakpoint",
        # Same family: more reflection and interpreter control.
        "delattr", "dir", "type", "object", "super", "memoryview", "help", "exit", "quit",
        "classmethod", "staticmethod", "property",
    }
)  # fmt: skip

FORBIDDEN_ATTRIBUTES = frozenset(
    {
        # Strings evaluated as expressions; str.format can walk attributes by name.
        "eval", "query", "format", "format_map",
        # numpy file access and raw memory.
        "load", "loads", "save", "savez", "savez_compressed", "savetxt", "loadtxt",
        "genfromtxt", "fromfile", "fromregex", "tofile", "dump", "dumps", "memmap",
        "open_memmap", "DataSource", "ctypes", "ctypeslib", "npyio", "f2py", "distutils",
        # pandas file access (to_numpy, to_frame, … stay allowed).
        "to_csv", "to_pickle", "to_parquet", "to_feather", "to_hdf", "to_sql", "to_excel",
        "to_json", "to_stata", "to_orc", "to_xml", "to_clipboard", "to_html", "to_latex",
        "to_markdown", "to_string", "HDFStore", "ExcelFile", "ExcelWriter", "io",
        "set_option", "option_context", "options",
    }
)  # fmt: skip
FORBIDDEN_ATTRIBUTE_PREFIXES = ("read_",)

ALLOWED_NODES: frozenset[type[ast.AST]] = frozenset(
    {
        ast.Module, ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Return, ast.If,
        ast.For, ast.While, ast.Break, ast.Continue, ast.Pass, ast.FunctionDef, ast.Import,
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
            *_check_nodes(tree),
            *_check_top_level(tree),
            *_check_module_state(tree),
            *_check_entry_points(tree),
        ]
    except RecursionError:
        return [RuleViolation("syntax", "expressions are nested too deeply")]
    # Violations without a line (a missing entry point) go last.
    ordered = sorted(enumerate(found), key=lambda p: (p[1].line is None, p[1].line or 0, p[0]))
    return [violation for _, violation in ordered]


def _check_nodes(tree: ast.Module) -> Iterator[RuleViolation]:
    for node in ast.walk(tree):
        line = getattr(node, "lineno", None)
        if type(node) not in ALLOWED_NODES:
            yield RuleViolation("node", f"{type(node).__name__} is not allowed", line)
            continue
        for name in _identifiers(node):
            if name.startswith("__"):
                yield RuleViolation("dunder", f"{name!r} is not allowed", line)
            elif isinstance(node, ast.Name) and name in FORBIDDEN_NAMES:
                yield RuleViolation("forbidden_call", f"{name!r} is not allowed", line)
        if isinstance(node, ast.Attribute) and _forbidden_attribute(node.attr):
            yield RuleViolation("forbidden_attr", f"attribute {node.attr!r} is not allowed", line)
        if isinstance(node, ast.FunctionDef) and node.decorator_list:
            yield RuleViolation("node", f"decorator on {node.name!r} is not allowed", line)
        if isinstance(node, ast.FunctionDef | ast.Lambda):
            yield from _check_arguments(node.args, line)
        if isinstance(node, ast.FunctionDef) and node.returns is not None:
            yield from _check_annotation(node.returns)
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield from _check_import(node)


def _identifiers(node: ast.AST) -> Iterator[str]:
    """Names a node binds or reads, wherever Python keeps them."""
    if isinstance(node, ast.Name):
        yield node.id
    elif isinstance(node, ast.Attribute):
        yield node.attr
    elif isinstance(node, ast.FunctionDef):
        yield node.name
    elif isinstance(node, ast.arg):
        yield node.arg
    elif isinstance(node, ast.keyword):
        # ``arg`` is None for ``**kwargs`` unpacking.
        yield from [node.arg] if node.arg is not None else []
    elif isinstance(node, ast.alias):
        yield from node.name.split(".")
        if node.asname is not None:
            yield node.asname
    elif isinstance(node, ast.ImportFrom) and node.module is not None:
        yield from node.module.split(".")


def _forbidden_attribute(name: str) -> bool:
    return name in FORBIDDEN_ATTRIBUTES or name.startswith(FORBIDDEN_ATTRIBUTE_PREFIXES)


def _check_import(node: ast.Import | ast.ImportFrom) -> Iterator[RuleViolation]:
    line = node.lineno
    if isinstance(node, ast.ImportFrom):
        if node.level:
            yield RuleViolation("import", "relative imports are not allowed", line)
            return
        module = node.module or ""
        if module.split(".")[0] not in ALLOWED_MODULES:
            yield RuleViolation("import", f"module {module!r} is not allowed", line)
        for alias in node.names:
            if alias.name == "*":
                yield RuleViolation("import", f"'from {module} import *' is not allowed", line)
            elif alias.name in FORBIDDEN_NAMES or _forbidden_attribute(alias.name):
                yield RuleViolation("forbidden_attr", f"importing {alias.name!r}", line)
        return
    for alias in node.names:
        if alias.name.split(".")[0] not in ALLOWED_MODULES:
            yield RuleViolation("import", f"module {alias.name!r} is not allowed", line)
        for part in alias.name.split(".")[1:]:
            if _forbidden_attribute(part):
                yield RuleViolation("forbidden_attr", f"importing {alias.name!r}", line)


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
