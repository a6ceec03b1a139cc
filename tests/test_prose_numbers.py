"""tools/prose_numbers.py: quoted results are matched against what cells above printed."""

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import prose_numbers  # noqa: E402


def _notebook(tmp_path, cells):
    nb = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))
    return path


def _code(text):
    out = {"output_type": "stream", "name": "stdout", "text": text}
    return {"cell_type": "code", "source": "", "outputs": [out]}


def _md(text):
    return {"cell_type": "markdown", "source": text}


def test_a_quoted_result_must_be_printed_above_it(tmp_path):
    path = _notebook(
        tmp_path,
        [
            _md("Before any cell: 0.913 is unprinted."),
            _code("accuracy 0.9134, loss 0.268\n"),
            _md("ALA reached 0.913 (0.91 rounded), and 26.8% of it; alpha 0.1 is a setting."),
            _md("But 0.874 was never printed, nor -0.45."),
        ],
    )
    found = [(cell, number) for cell, number, _ in prose_numbers.unprinted(path)]
    assert found == [(0, "0.913"), (3, "0.874"), (3, "-0.45")]


ROOT = Path(__file__).resolve().parents[1]
COMPARING = sorted(p for p in (ROOT / "notebooks").glob("0[2-9]_*.ipynb"))


def _code_of(path):
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def test_every_notebook_that_compares_methods_checks_its_prose_claims():
    """Notebooks 02-09 draw comparative conclusions, so each states them as fm.expect checks
    (a full run then fails when its own numbers contradict its prose), and none of them is a
    constant that cannot fail."""
    assert len(COMPARING) == 8
    for path in COMPARING:
        code = _code_of(path)
        assert "fm.expect(" in code, f"{path.name} states no claim with fm.expect"
        constant = re.search(r"fm\.expect\(\s*\"[^\"]*\",\s*(True|False|1|0)\s*[,)]", code)
        assert not constant, f"{path.name}: {constant.group()} cannot fail"
