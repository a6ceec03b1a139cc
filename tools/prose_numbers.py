"""List the results a notebook's prose quotes that no cell above it printed.

    python tools/prose_numbers.py build/executed/03_personalization_weights.ipynb
    python tools/prose_numbers.py --all            # every notebook in build/executed/

Run it on *executed* notebooks (``tools/run_notebooks.py`` writes them to build/executed/).
A result here is a decimal with at least two digits after the point (``0.913``, ``-0.45``) or
a percentage with a decimal (``26.8%``). The check passes for a quoted number when some
number printed by a cell *above* the markdown rounds to it at the quoted precision (``0.9134``
covers ``0.913`` and ``0.91``). Settings written with one decimal (``alpha 0.1``) and integers
are not checked: they are inputs, not results. A number that the text takes from the README
(and says so) is reported too; read the list, do not drive it to zero blindly.

Exit status: 0 when nothing is unprinted, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

RESULT = re.compile(r"(?<![\w.])[-+−]?\d+\.\d{2,}(?!\w|\.\d)|(?<![\w.])\d+\.\d+(?=\s?%)")
NUMBER = re.compile(r"[-+−]?\d+\.\d+|[-+−]?\d+")


def _text(outputs) -> str:
    parts = []
    for out in outputs:
        if out.get("output_type") == "stream":
            parts.append("".join(out.get("text", "")))
        elif "data" in out:
            for key in ("text/plain", "text/html", "text/markdown"):
                if key in out["data"]:
                    parts.append("".join(out["data"][key]))
    return "\n".join(parts)


def _floats(text: str) -> list[float]:
    return [float(n.replace("−", "-")) for n in NUMBER.findall(text)]


def _covered(quoted: str, printed: list[float]) -> bool:
    value = float(quoted.replace("−", "-"))
    decimals = len(quoted.split(".")[1]) if "." in quoted else 0
    tol = 0.5 * 10**-decimals + 1e-12
    for p in printed:
        for candidate in (p, 100 * p, p / 100):  # 0.268 printed, 26.8% quoted (or back)
            if abs(abs(candidate) - abs(value)) <= tol:
                return True
    return False


def unprinted(path: Path) -> list[tuple[int, str, str]]:
    """``(cell index, number, its sentence)`` for every quoted result no cell above printed."""
    cells = json.loads(path.read_text())["cells"]
    printed: list[float] = []
    found = []
    for i, cell in enumerate(cells):
        source = "".join(cell["source"])
        if cell["cell_type"] == "code":
            printed += _floats(_text(cell.get("outputs", [])))
            continue
        if cell["cell_type"] != "markdown":
            continue
        for match in RESULT.finditer(source):
            if not _covered(match.group(), printed):
                start = source.rfind("\n", 0, match.start()) + 1
                end = source.find("\n", match.end())
                found.append((i, match.group(), source[start : end if end > 0 else None]))
    return found


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", type=Path)
    ap.add_argument("--all", action="store_true", help="every notebook in build/executed/")
    args = ap.parse_args(argv)
    paths = args.notebooks
    if args.all:
        paths = sorted(Path("build/executed").glob("*.ipynb"))
    if not paths:
        raise SystemExit("give executed notebooks, or --all")
    total = 0
    for path in paths:
        found = unprinted(path)
        total += len(found)
        print(f"{path.name}: {len(found)} quoted results no cell above printed")
        for cell, number, line in found:
            print(f"  cell {cell}: {number}  | {line.strip()[:110]}")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
