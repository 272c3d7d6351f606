"""The import graph of the workspace's packages, read from their sources (``*/src``, not
their tests): no front end (the client API, the CLI, the HTTP API) and no library under
them imports a service's package, every import runs down the layers, and no module is part
of an import cycle. Imports inside functions count too: they are arrows all the same; those
under ``if TYPE_CHECKING:`` count for the layers, not for cycles (no process runs them)."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A package may import only packages of a lower layer: nothing runs back up, and nothing
# in one layer imports another of the same layer (the client and the services never meet).
LAYERS = {
    "alphasaga_contracts": 0,
    "alphasaga_shared": 1,
    "alphasaga_saga": 2,
    "alphasaga_accounts": 2,
    "alphasaga_readmodel": 3,
    "alphasaga_client": 4,
    "alphasaga_orchestrator": 4,
    "alphasaga_reasoning": 4,
    "alphasaga_codegen": 4,
    "alphasaga_ml": 4,
    "alphasaga_backtest": 4,
    "alphasaga_api": 5,
    "alphasaga_cli": 6,
}
SERVICES = {"alphasaga_orchestrator", "alphasaga_reasoning", "alphasaga_codegen", "alphasaga_ml", "alphasaga_backtest"}
NO_SERVICE_IMPORTS = {"alphasaga_client", "alphasaga_cli", "alphasaga_api", "alphasaga_saga", "alphasaga_readmodel"}


def modules() -> dict[str, Path]:
    """Every module of every package's sources, by dotted name."""
    found: dict[str, Path] = {}
    for package in [*ROOT.glob("*/src/alphasaga_*"), *ROOT.glob("services/*/src/alphasaga_*")]:
        for path in package.rglob("*.py"):
            parts = list(path.relative_to(package.parent).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom, known: dict[str, Path]) -> Iterable[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    prefix = node.module or ""
    if node.level:
        base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        prefix = ".".join([*base, *([node.module] if node.module else [])])
    for alias in node.names:
        name = f"{prefix}.{alias.name}"
        yield name if name in known else prefix


def _imports(tree: ast.Module, *, typing_too: bool) -> list[ast.Import | ast.ImportFrom]:
    """The module's imports; with ``typing_too``, those under ``if TYPE_CHECKING:`` as well."""
    skipped: set[int] = set()
    if not typing_too:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
                skipped.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) and id(n) not in skipped]


def edges(*, typing_too: bool = True) -> dict[str, set[str]]:
    """Module -> the workspace's modules it imports (with those only type checkers read,
    unless ``typing_too`` is false: they run in no process, so they make no cycle)."""
    known = modules()
    out: dict[str, set[str]] = {m: set() for m in known}
    for module, path in known.items():
        for node in _imports(ast.parse(path.read_text()), typing_too=typing_too):
            for target in _targets(module, path, node, known):
                while target not in known and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in known and target != module:
                    out[module].add(target)
    return out


def package_edges(graph: dict[str, set[str]]) -> set[tuple[str, str, str]]:
    """(importing package, imported package, the importing module) across packages."""
    return {
        (a.split(".")[0], b.split(".")[0], a)
        for a, bs in graph.items()
        for b in bs
        if a.split(".")[0] != b.split(".")[0]
    }


def upward(pairs: Iterable[tuple[str, str, str]]) -> list[str]:
    """The imports that do not run down the layers."""
    return sorted(
        f"{module} imports {b}"
        for a, b, module in pairs
        if a not in LAYERS or b not in LAYERS or LAYERS[b] >= LAYERS[a]
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = [stack.pop()]
            while component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


GRAPH = edges()
PAIRS = package_edges(GRAPH)


def test_the_graph_is_read_from_the_sources() -> None:
    packages = {(a, b) for a, b, _ in PAIRS}
    assert ("alphasaga_client", "alphasaga_readmodel") in packages
    assert ("alphasaga_orchestrator", "alphasaga_saga") in packages
    assert ("alphasaga_api", "alphasaga_client") in packages
    assert set(LAYERS) >= {m.split(".")[0] for m in GRAPH}, "a package without a layer: give it one above"


def test_no_front_end_and_no_library_under_one_imports_a_service() -> None:
    found = sorted(f"{module} imports {b}" for a, b, module in PAIRS if a in NO_SERVICE_IMPORTS and b in SERVICES)
    assert found == []


def test_every_import_runs_down_the_layers() -> None:
    assert upward(PAIRS) == []
    # The check itself sees an arrow back up, and one within a layer.
    assert upward({("alphasaga_client", "alphasaga_orchestrator", "m"), ("alphasaga_saga", "alphasaga_readmodel", "n")})


def test_no_module_is_part_of_an_import_cycle() -> None:
    assert cycles(edges(typing_too=False)) == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
