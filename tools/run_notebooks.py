"""Execute the notebook series with time limits, and say which notebook stalled.

    python tools/run_notebooks.py                   # every notebook, full mode, once
    python tools/run_notebooks.py --smoke --repeat 10
    python tools/run_notebooks.py 04 06 --repeat 3  # notebooks whose names start with 04, 06

Each notebook runs in its own ``jupyter nbconvert --execute`` with a per-cell limit
(``--cell-timeout``) and a whole-notebook limit (``--timeout``); a notebook that passes
either is killed and reported by name, so a stalled kernel costs minutes, not a CI run.
Executed copies go to ``build/executed/``. The exit code is the number of failed runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "executed"


def run_one(path: Path, smoke: bool, cell_timeout: int, timeout: int) -> tuple[str, float]:
    """Execute one notebook; return (``"ok"``, ``"failed"`` or ``"stalled"``, seconds)."""
    jupyter = Path(sys.executable).with_name("jupyter")
    cmd = [str(jupyter), "nbconvert", "--to", "notebook", "--execute", str(path),
           "--output-dir", str(OUT), f"--ExecutePreprocessor.timeout={cell_timeout}"]  # fmt: skip
    env = {**os.environ, "FEDLAB_MM_SMOKE": "1" if smoke else "0", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}  # fmt: skip
    env.pop("MPLBACKEND", None)  # figures inline, as a student sees them
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "stalled", time.perf_counter() - start
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:]
        print(f"    {path.name}: " + " | ".join(tail), file=sys.stderr)
        return ("stalled" if "CellTimeoutError" in done.stderr else "failed"), seconds
    return "ok", seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prefixes", nargs="*", help="run only notebooks starting with these")
    parser.add_argument("--smoke", action="store_true", help="FEDLAB_MM_SMOKE=1")
    parser.add_argument("--repeat", type=int, default=1, help="runs of the whole selection")
    parser.add_argument("--cell-timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per notebook")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat={args.repeat} must be at least 1")
    paths = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.prefixes:
        paths = [p for p in paths if p.name.startswith(tuple(args.prefixes))]
        if not paths:
            parser.error(f"no notebook starts with {args.prefixes}")
    OUT.mkdir(parents=True, exist_ok=True)
    failures = 0
    for k in range(1, args.repeat + 1):
        total = 0.0
        for path in paths:
            status, seconds = run_one(path, args.smoke, args.cell_timeout, args.timeout)
            total += seconds
            failures += status != "ok"
            print(
                f"run {k}/{args.repeat}  {path.stem:<32} {status:<8} {seconds:7.1f} s", flush=True
            )
        print(f"run {k}/{args.repeat}  all {len(paths)} notebooks {total:.0f} s", flush=True)
    print(f"{failures} failed or stalled runs of {args.repeat * len(paths)}")
    return failures


if __name__ == "__main__":
    sys.exit(main())
