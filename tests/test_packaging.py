"""The install files agree with each other, and notebooks are committed clean."""

import json
import re
import subprocess
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def _pins(lines):
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip().lstrip("- ").strip()
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s]+)", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def constraints():
    return _pins((ROOT / "constraints.txt").read_text().splitlines())


def lock():
    return _pins((ROOT / "requirements.lock").read_text().splitlines())


def test_constraints_pin_the_cpu_torch_first():
    lines = [
        ln
        for ln in (ROOT / "constraints.txt").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "torch==2.13.0"


def test_the_lock_holds_every_constraint_and_the_whole_environment():
    locked, chosen = lock(), constraints()
    for name, version in chosen.items():
        assert locked.get(name) == version, (
            f"{name}: lock {locked.get(name)}, constraints {version}"
        )
    # the lock is the whole environment: the kernel stack and the hub client are pinned too
    for name in (
        "ipykernel",
        "jupyter-client",
        "pyzmq",
        "tornado",
        "tokenizers",
        "huggingface-hub",
    ):
        assert name in locked, f"{name} floats: run make lock"
    assert locked["ipykernel"].startswith("6."), "ipykernel 7 stalls Run All (see pyproject.toml)"
    assert "pip" not in locked and not any(n.startswith("nvidia") for n in locked)


def test_environment_yml_installs_the_lock():
    text = (ROOT / "environment.yml").read_text()
    pip_section = text.split("- pip:", 1)[1]
    assert "- -r requirements.lock" in pip_section
    assert "-e .[dev,audio,flower,hf]" in pip_section


def test_every_dependency_is_locked_within_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in ("dev", "audio", "flower", "hf"):
        reqs += project["optional-dependencies"][extra]
    pins = lock()
    for text in reqs:
        req = Requirement(text)
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not in requirements.lock: run make lock"
        assert req.specifier.contains(pins[name], prereleases=True), (name, pins[name])


def test_make_installs_the_lock_and_ci_is_the_readme_command():
    makefile = (ROOT / "Makefile").read_text()
    assert "-r requirements.lock" in makefile and "jupyter-lab" in makefile
    assert "tools/browser.py --install" in makefile
    ci = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines()
          if ln.strip() and not ln.startswith(("#", "set ", "cd "))]  # fmt: skip
    assert ci == ["make test"], ci
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make lab" in readme


def _notebooks():
    listed = subprocess.run(
        ["git", "ls-files", "*.ipynb"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    return sorted(set(listed) | {str(p.relative_to(ROOT)) for p in ROOT.glob("notebooks/*.ipynb")})


@pytest.mark.parametrize("path", _notebooks())
def test_notebooks_are_committed_without_outputs(path):
    nb = json.loads((ROOT / path).read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{path} carries outputs: run nbstripout"
            assert cell.get("execution_count") is None, f"{path} carries execution counts"
    assert "widgets" not in nb.get("metadata", {}), f"{path} carries widget state"


def test_notebooks_are_numbered_and_titled():
    for path in _notebooks():
        name = Path(path).name
        assert re.match(r"\d\d_[a-z0-9_]+\.ipynb$", name), name
        first = json.loads((ROOT / path).read_text())["cells"][0]
        assert first["cell_type"] == "markdown" and "".join(first["source"]).startswith("# ")
