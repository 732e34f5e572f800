"""The registry says each thing once, and the variants stay apart.

Read from the source files with ``ast`` -- nothing here imports a variant:

* each variant's one-line ``summary`` (the registry's) is the first line of
  its module docstring and its row in README's models table, whose last
  column is the registry's ``protection`` (fails how; protected how);
* no variant module imports another variant module: what they share lives in
  the non-variant modules (``protocol``, ``service``, ``tuning``,
  ``_blocking``, ``_nonblocking``, ``_asyncio_shared``, ``native_build``);
* the suite-wide numbers are assigned in ``servers/tuning.py`` only, and the
  list of C compilers in ``servers/native_build.py`` only.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import servers

PACKAGE = Path(servers.__file__).resolve().parent
README = PACKAGE.parent / "README.md"
VARIANTS = [v for v in servers.REGISTRY.values() if v.code != "test"]
SHARED_NUMBERS = {"RECV_SIZE", "HIGH_WATER", "LOW_WATER", "LINGER_LIMIT", "LISTEN_BACKLOG"}


def source_of(module: str) -> Path:
    """The file of ``servers.x`` (no import)."""
    return PACKAGE / f"{module.split('.', 1)[1]}.py"


def plain(text: str) -> str:
    """Compare words, not markup: drop backticks, a final period, the first letter's case."""
    text = text.replace("`", "").strip().rstrip(".")
    return text[:1].lower() + text[1:]


def imported_modules(path: Path) -> set[str]:
    """Every ``servers.*`` module the file imports (``from servers import x`` counts as x)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "servers":
                found.update(f"servers.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("servers.")}


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_docstring_opens_with_the_registry_summary(variant: servers.Variant) -> None:
    tree = ast.parse(source_of(variant.module_name).read_text(encoding="utf-8"))
    docstring = ast.get_docstring(tree)
    assert docstring, f"{variant.name} has no module docstring"
    assert plain(docstring.splitlines()[0]) == plain(variant.summary)


def test_readme_models_table_is_the_registry() -> None:
    row = r"^\| `(\w+)` \| (.+) \| (.+) \| (.+) \|$"  # | `name` | model | scheduling | fails |
    rows = re.findall(row, README.read_text(encoding="utf-8"), re.M)
    table = {name: (plain(model), sched, plain(fails)) for name, model, sched, fails in rows}
    expected = {v.name: (plain(v.summary), v.scheduling, plain(v.protection)) for v in VARIANTS}
    assert table == expected


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_no_variant_imports_another_variant(variant: servers.Variant) -> None:
    others = {v.module_name for v in VARIANTS} - {variant.module_name}
    assert not imported_modules(source_of(variant.module_name)) & others


def test_the_import_check_sees_every_form(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import servers.a\nfrom servers.b import x\nfrom servers import c\nimport os\n"
    )
    assert imported_modules(sample) == {"servers.a", "servers.b", "servers.c"}


def test_shared_modules_are_not_variants() -> None:
    variant_files = {source_of(v.module_name).name for v in VARIANTS}
    for path in PACKAGE.glob("*.py"):
        if path.name in variant_files:
            continue
        for module in imported_modules(path):
            assert module.split(".")[1] not in servers.REGISTRY, f"{path.name} imports {module}"


def assigned_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }


def test_suite_numbers_and_compilers_have_one_home() -> None:
    for path in PACKAGE.glob("*.py"):
        if path.name != "tuning.py":
            assert not assigned_names(path) & SHARED_NUMBERS, path.name
        if path.name != "native_build.py":
            assert '"clang"' not in path.read_text(encoding="utf-8"), path.name


def test_every_variant_says_how_it_serves_an_offload() -> None:
    for variant in VARIANTS:
        assert variant.offload, f"{variant.name}: no Variant.offload"


def test_code_and_scheduling_are_known() -> None:
    for variant in VARIANTS:
        assert variant.code in servers.CODE and variant.scheduling in servers.SCHEDULING
    with pytest.raises(ValueError):
        servers.Variant("x", "y", True, code="nonsense", scheduling="threads")
