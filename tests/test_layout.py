"""The code's rooms (issue 19): loadgen/report presents, loadgen/suite plans and measures.
The report package never imports the measuring one, and no module of loadgen imports one
that imports it back (imports under ``if TYPE_CHECKING:`` are for the type checker only)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "loadgen"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: Path) -> set[str]:
    """The loadgen modules ``path`` imports when it runs (at the top or in a function)."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for n in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    return {m for m in found if m in modules and m.startswith("loadgen.")}


def graph() -> dict[str, set[str]]:
    return {module_name(p): runtime_imports(p) for p in PACKAGE.rglob("*.py")}


def test_the_report_package_does_not_import_the_measuring_one() -> None:
    for name, deps in graph().items():
        if name.startswith("loadgen.report"):
            assert not {d for d in deps if d.startswith("loadgen.suite")}, name


def test_no_import_circle_in_loadgen() -> None:
    edges = {
        n: {d for d in deps if d != n and not n.startswith(d + ".")} for n, deps in graph().items()
    }
    seen: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> None:
        seen[node] = 1
        for dep in sorted(edges.get(node, set())):
            if seen.get(dep) == 1:
                raise AssertionError("import circle: " + " -> ".join([*path, dep]))
            if dep not in seen:
                visit(dep, [*path, dep])
        seen[node] = 2

    for node in sorted(edges):
        if node not in seen:
            visit(node, [node])
