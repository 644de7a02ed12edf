"""Every `ewi` import in the code resolves, including those inside functions, which only fail when
their command runs: modules move (ewi/setup.py became ewi/warehouse_init.py, the benchmarks became
ewi/bench/), and a lazy import of the old name would wait for a user to find it."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TREES = ("ewi", "dags", "tests")


def _ewi_imports() -> list[tuple[str, int, str, str | None]]:
    """(file, line, module, name or None) of every absolute import of an ewi module."""
    found = []
    for tree in TREES:
        for path in sorted((ROOT / tree).rglob("*.py")):
            where = str(path.relative_to(ROOT))
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=where)):
                if isinstance(node, ast.Import):
                    found += [(where, node.lineno, a.name, None) for a in node.names
                              if a.name == "ewi" or a.name.startswith("ewi.")]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                        node.module == "ewi" or node.module.startswith("ewi.")):
                    found += [(where, node.lineno, node.module, a.name) for a in node.names]
    return found


def _resolves(module: str, name: str | None) -> bool:
    try:
        imported = importlib.import_module(module)
    except ModuleNotFoundError:
        return False
    if name is None or name == "*" or hasattr(imported, name):
        return True
    # a submodule not imported yet (`from ewi import synth`)
    return hasattr(imported, "__path__") and importlib.util.find_spec(f"{module}.{name}") is not None


def test_every_ewi_import_resolves():
    imports = _ewi_imports()
    assert len(imports) > 100  # the walk found the code
    broken = []
    for where, line, module, name in imports:
        if not _resolves(module, name):
            broken.append(f"{where}:{line}: {module}{'.' + name if name else ''}")
    assert broken == [], "imports of names that do not exist:\n" + "\n".join(broken)


@pytest.mark.parametrize("module", ["ewi.setup", "ewi.bench_dbt", "ewi.alerts.evaluate", "ewi.alerts.simulate"])
def test_the_old_names_are_gone(module):
    """Moved, not copied: one place each."""
    assert importlib.util.find_spec(module) is None
