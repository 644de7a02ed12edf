"""The layers of docs/architecture.md, checked: import-linter's contracts in .importlinter hold on
the tree, and they break when a lower layer imports a higher one or the runtime imports a tool
(shown on a copy of the package with one bad import added). The DAG files import only the
orchestration package."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ewi import config

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_layers_hold_on_the_tree():
    result = _lint_imports(config.PROJECT_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " broken" in result.stdout and "0 broken" in result.stdout


@pytest.fixture
def package_copy(tmp_path) -> Path:
    shutil.copytree(config.PROJECT_ROOT / "ewi", tmp_path / "ewi",
                    ignore=shutil.ignore_patterns("__pycache__", "static", "templates", "migrations"))
    shutil.copy(config.PROJECT_ROOT / ".importlinter", tmp_path)
    return tmp_path


def _add_import(module: Path, statement: str) -> None:
    # A function-level import, as many of EWI's are: the graph counts it all the same.
    with open(module, "a", encoding="utf-8") as fh:
        fh.write(f"\n\ndef _bad():\n    {statement}\n")


@pytest.mark.parametrize(("module", "statement", "expected"), [
    ("warehouse.py", "from ewi.dashboard import data", "ewi.warehouse -> ewi.dashboard.data"),
    ("ingest/reading.py", "from ewi import transform", "ewi.ingest.reading -> ewi.transform"),
    ("sources.py", "from ewi.orchestration import assets", "ewi.sources -> ewi.orchestration.assets"),
])
def test_a_lower_layer_importing_a_higher_one_breaks_the_layers(package_copy, module, statement, expected):
    assert _lint_imports(package_copy).returncode == 0  # the copy alone keeps every contract
    _add_import(package_copy / "ewi" / module, statement)
    result = _lint_imports(package_copy)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and expected in result.stdout, result.stdout


@pytest.mark.parametrize(("module", "statement", "expected"), [
    # the runtime importing a tool, though the tool's layer is lower
    ("transform.py", "from ewi import synth", "ewi.transform -> ewi.synth"),
    # the dashboard calling the pipeline, though the pipeline's layers are lower
    ("dashboard/data.py", "from ewi import transform", "ewi.dashboard.data -> ewi.transform"),
])
def test_a_forbidden_import_breaks_its_contract(package_copy, module, statement, expected):
    _add_import(package_copy / "ewi" / module, statement)
    result = _lint_imports(package_copy)
    assert result.returncode != 0
    assert expected in result.stdout, result.stdout


def _ewi_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "ewi":
            found |= {f"ewi.{a.name}" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ewi."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "ewi"}
    return found


@pytest.mark.parametrize("dag_file", sorted(config.DAGS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_dags_import_only_the_orchestration_package(dag_file):
    outside = {m for m in _ewi_imports(dag_file) if not m.startswith("ewi.orchestration")}
    assert outside == set(), f"{dag_file.name} reaches past ewi.orchestration"


def _contract(name: str):
    import configparser

    parser = configparser.ConfigParser(inline_comment_prefixes=None)
    parser.read(config.PROJECT_ROOT / ".importlinter", encoding="utf-8")
    return parser[f"importlinter:contract:{name}"]


def test_every_module_of_the_package_has_its_layer():
    """A new module or subpackage of ewi/ is placed in a layer (and so in docs/architecture.md)
    before it can be merged."""
    layered = {name.strip() for line in _contract("layers")["layers"].split("\n")
               for name in line.replace(":", "|").split("|") if name.strip()}
    package = {f"ewi.{p.stem}" for p in (config.PROJECT_ROOT / "ewi").glob("*.py") if p.stem != "__init__"}
    # subpackages with code (ewi/migrations holds SQL files only)
    package |= {f"ewi.{p.parent.name}" for p in (config.PROJECT_ROOT / "ewi").glob("*/__init__.py")
                if any(m.name != "__init__.py" for m in p.parent.glob("*.py"))}
    assert package - layered == set()
    assert layered - package == set()  # nor does the contract name a module that is gone


def test_the_map_names_every_module_and_folder():
    """docs/architecture.md matches the tree: every module and subpackage of ewi/ and every folder
    of the repository is in it."""
    text = (config.PROJECT_ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    ewi = config.PROJECT_ROOT / "ewi"
    names = {f"{p.stem}.py" for p in ewi.glob("*.py") if p.stem != "__init__"}
    names |= {f"{p.name}/" for p in ewi.iterdir() if (p / "__init__.py").exists()}
    tracked = subprocess.run(["git", "ls-files"], cwd=config.PROJECT_ROOT, capture_output=True, text=True,
                             check=True).stdout.splitlines()
    names |= {f"{path.split('/')[0]}/" for path in tracked if "/" in path and not path.startswith(".")}
    missing = sorted(n for n in names if n not in text)
    assert missing == []
