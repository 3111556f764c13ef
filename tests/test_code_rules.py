"""House rules that lint alone does not hold: no function in m2fp_batch/ longer than 60 lines, no
import cycle.

Ruff's statement limit (PLR0915, pyproject) counts statements; this counts lines, from the
``def`` line (decorators excluded) to the function's last line, nested functions included.

The import graph counts every import, at module level or inside a function (a lazy import only
hides a cycle until the first call): ``from X import n`` depends on ``X`` (its ``__init__`` when
``X`` is a package) and on ``X.n`` when that is a module; ``import a.b.c`` and ``from a.b.c import
n`` also run the ``__init__`` of ``a`` and ``a.b``, except the importer's own enclosing packages,
which are already loading.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "m2fp_batch"
MAX_LINES = 60


def _visit(node: ast.AST, where: str, out: dict[str, int]) -> None:
    """Record every function below ``node``; ``where`` is ``path::Outer.`` so far."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out[f"{where}{child.name}"] = child.end_lineno - child.lineno + 1
            _visit(child, f"{where}{child.name}.", out)
        elif isinstance(child, ast.ClassDef):
            _visit(child, f"{where}{child.name}.", out)
        else:
            _visit(child, where, out)


def function_lengths() -> dict[str, int]:
    """``relative/path.py::qualified.name`` -> lines, for every function in the package."""
    out: dict[str, int] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        _visit(tree, f"{path.relative_to(PACKAGE).as_posix()}::", out)
    return out


def test_no_function_is_longer_than_60_lines():
    lengths = function_lengths()
    assert len(lengths) > 500, "the walk found too few functions"
    too_long = {k: n for k, n in lengths.items() if n > MAX_LINES}
    assert not too_long, f"split these into named steps (<= {MAX_LINES} lines): {too_long}"


def package_modules(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (a package is its ``__init__``)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[tuple[str, list[str]]]:
    """(target module, names taken from it) for one import statement of ``module``."""
    if isinstance(node, ast.Import):
        return [(alias.name, []) for alias in node.names]
    base = node.module or ""
    if node.level:
        here = module.split(".") if is_package else module.split(".")[:-1]
        here = here[: len(here) - (node.level - 1)]
        base = ".".join([*here, base] if base else here)
    return [(base, [alias.name for alias in node.names])]


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules that importing it runs (see the module docstring)."""
    modules = package_modules(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        own = set(_ancestors(name))
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target, names in _imported(node, name, path.name == "__init__.py"):
                found = {a for a in _ancestors(target) if a not in own} | {target}
                found |= {f"{target}.{n}" for n in names}
                graph[name] |= {m for m in found if m in modules and m != name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 100 and sum(map(len, graph.values())) > 300, "the walk found too few imports"
    assert "m2fp_batch.settings" in graph["m2fp_batch.inference.parser"], "a known import was missed"
    cycles = import_cycles(graph)
    assert not cycles, f"import cycles (each a set of modules that import each other): {cycles}"


def test_the_cycle_finder_finds_a_lazy_cycle_through_a_package_init(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub.a import f\n")
    (pkg / "sub" / "a.py").write_text("def f():\n    from . import b\n")
    (pkg / "sub" / "b.py").write_text("from pkg.sub import f\n")
    (pkg / "c.py").write_text("import pkg.sub.b\n")
    graph = import_graph(pkg)
    assert graph["pkg.c"] == {"pkg.sub", "pkg.sub.b"}
    assert import_cycles(graph) == [["pkg.sub", "pkg.sub.a", "pkg.sub.b"]]
