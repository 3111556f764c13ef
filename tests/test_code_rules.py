"""House rules that lint alone does not hold: no function in m2fp_batch/ longer than 60 lines.

Ruff's statement limit (PLR0915, pyproject) counts statements; this counts lines, from the
``def`` line (decorators excluded) to the function's last line, nested functions included.
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
