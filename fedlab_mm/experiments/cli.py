"""The ``fedlab-mm`` console command: ``fedlab-mm grid --help``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from .. import config
from ..knobs import BASE, KNOBS
from ..recipes import METHODS, PROBE_SOURCES, Scale
from ..viz import grid_curves
from .grid import grid, ranking, summary

__all__ = ["main"]


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        msg = f"{text!r} is not a comma-separated list of numbers"
        raise argparse.ArgumentTypeError(msg) from None


def _parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {m.name:12s} {m.label} (notebook {m.notebook})" for m in METHODS.values())
    p = argparse.ArgumentParser(
        prog="fedlab-mm",
        description="fedlab_mm from the command line.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser(
        "grid",
        help="run a method x heterogeneity grid and save CSV + PNG",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Run every method on every setting with several seeds, one knob at a time:\n"
            "each knob's values are run with the other knobs at their base values\n"
            f"{BASE}.\nFinished cells are cached in OUT/cells, so a re-run skips them.\n\n"
            f"methods:\n{lines}"
        ),
        epilog=(
            "example:\n  fedlab-mm grid --methods fedavg,fedepa --alpha 0.1,1 --seeds 3 "
            "--out results/\n\nwrites OUT/grid.csv (one row per cell), OUT/summary.csv "
            "(mean and std),\nOUT/ranking.csv and OUT/grid.png (accuracy against each knob)."
        ),
    )
    g.add_argument("--methods", default="fedavg,local,fedepa", help="comma-separated names")
    for knob in KNOBS:
        flag = "--" + knob.replace("_", "-")
        g.add_argument(flag, type=_floats, default=[], metavar="V1,V2", help=f"values of {knob}")
    g.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    g.add_argument("--out", default="results", help="output folder (default results/)")
    g.add_argument("--processes", type=int, default=1, help="worker processes (default 1)")
    g.add_argument("--rounds", type=int, default=Scale.rounds, help="rounds per run")
    g.add_argument("--clients", type=int, default=Scale.num_clients, help="clients per run")
    g.add_argument("--samples", type=int, default=Scale.n_samples, help="digits used (<= 5000)")
    g.add_argument(
        "--probe",
        choices=PROBE_SOURCES,
        default=Scale.probe_source,
        help="the CKA server's probe: public digits it captions itself (default) or a "
        "held-out split of the clients' distribution",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    """The ``fedlab-mm`` console command (``fedlab-mm grid --help``)."""
    args = _parser().parse_args(argv)
    config.offline()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    knobs = {k: getattr(args, k) for k in KNOBS if getattr(args, k)}
    try:
        scale = Scale(
            n_samples=args.samples,
            num_clients=args.clients,
            rounds=args.rounds,
            probe_source=args.probe,
        )
        out = Path(args.out)
        df = grid(
            methods,
            knobs,
            seeds=args.seeds,
            scale=scale,
            cache=out / "cells",
            processes=args.processes,
            progress=not args.quiet,
        )
    except ValueError as err:
        print(f"fedlab-mm grid: error: {err}", file=sys.stderr)
        return 2
    df.to_csv(out / "grid.csv", index=False)
    summary(df).to_csv(out / "summary.csv", index=False)
    ranks = ranking(df)
    ranks.to_csv(out / "ranking.csv")
    fig = grid_curves(df)
    fig.savefig(out / "grid.png", dpi=120, bbox_inches="tight")
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(ranks)
    print(f"wrote {len(df)} cells to {out}/grid.csv, summary.csv, ranking.csv, grid.png")
    return 0
