"""The package's layers point one way (issue 23).

``pyproject.toml`` writes the layers down as an import-linter contract; these tests run it,
show that it fails when a lower layer imports a higher one (even inside a function), and
check that every deferred import could move to module level without an import cycle.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fedlab_mm"
LINT = Path(sys.executable).with_name("lint-imports")
pytest.importorskip("importlinter")


def _lint(root: Path) -> subprocess.CompletedProcess:
    """lint-imports on the package under ``root`` with the project's contract."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache", "--no-logo"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(PACKAGE, tmp_path / "fedlab_mm", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path / "fedlab_mm"


def test_the_layers_contract_is_kept():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_the_contract_catches_an_upward_import_even_when_deferred(tmp_path):
    """The engine importing the recipes inside a function (the kind of cycle this issue
    removed) breaks the contract."""
    copy = _copy(tmp_path)
    history = copy / "federated" / "history.py"
    history.write_text(
        history.read_text()
        + "\n\ndef _sneaky():\n    from ..recipes import METHODS\n\n    return METHODS\n"
    )
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "fedlab_mm.federated.history -> fedlab_mm.recipes" in result.stdout


def _hoisted(source: str) -> str:
    """``source`` with every import inside a function or class body also made at the top
    of the module (after the module's own imports)."""
    tree = ast.parse(source)
    nested = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    nested.append(ast.unparse(inner))
    if not nested:
        return source
    lines = source.splitlines()
    last_top = max(
        (n.end_lineno for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))),
        default=0,
    )
    return "\n".join(lines[:last_top] + nested + lines[last_top:]) + "\n"


def test_every_deferred_import_can_move_to_module_level(tmp_path):
    copy = _copy(tmp_path)
    moved = 0
    for path in copy.rglob("*.py"):
        text = path.read_text()
        new = _hoisted(text)
        if new != text:
            moved += new.count("\n") - text.count("\n")
            path.write_text(new)
    assert moved > 0  # the copy really differs: some imports are deferred (third-party ones)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", "import fedlab_mm, fedlab_mm.flower; print(fedlab_mm.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert str(tmp_path) in result.stdout


def test_no_module_imports_a_private_name_of_another():
    """One home per name: a private name (``_x``) is shared at most between the modules of
    one package (``viz.common._plt``); importing one across packages, as ``frozen`` did
    with ``data._cached`` and ``RELA`` with ``strategies._unflatten`` before this issue, is how
    helpers end up in the wrong room."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            across = isinstance(node, ast.ImportFrom) and (
                node.level > 1 or (node.level == 0 and (node.module or "").startswith("fedlab_mm"))
            )
            if across or (isinstance(node, ast.ImportFrom) and path.parent == PACKAGE):
                for alias in node.names:
                    if alias.name.startswith("_") and alias.name != "__version__":
                        offenders.append(f"{path.relative_to(ROOT)}: {alias.name}")
    assert not offenders, offenders


def test_no_module_is_over_400_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert not long, long
