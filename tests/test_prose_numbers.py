"""tools/prose_numbers.py: quoted results are matched against what cells above printed."""

import json
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
