"""The README's method x heterogeneity grid and its claims table, rebuilt in one run.

    python -m benchmarks.grid                 # 6 methods x 8 settings x 3 seeds, and the claims
    python -m benchmarks.grid --processes 1   # one worker (the default is 2)

The grid is the README's ``fedlab-mm grid`` command (``fm.experiments.grid`` at the default
``Scale``: 2,000 digits as image + caption pairs, half the captions vague, 10 clients,
10 rounds of 2 local epochs, Adam), one knob at a time; each cell records the mean over its
last 3 rounds. The claims are ``fm.experiments.CLAIMS`` on the same scale and seeds. Cells
are cached in the kit's data cache (``grid/``), the folder notebook 09 reads, so a full run of
notebook 09 afterwards trains nothing it shares with this.

Writes docs/grid.csv and docs/grid.png, and prints both README tables as markdown.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

import fedlab_mm as fm
from fedlab_mm import experiments as E
from fedlab_mm.viz import grid_curves

from . import markdown

METHODS = ["fedavg", "local", "ala", "fedepa", "cka", "fedmvp"]
KNOBS = {
    "alpha": [0.1, 1, 10],
    "missing_rate": [0, 0.4, 0.8],
    "labeled_fraction": [0.1, 0.3, 1],
    "corrupted_fraction": [0, 0.3],
}
ROOT = Path(__file__).resolve().parents[1]


def _setting(row) -> str:
    label = E.describe_setting({k: row[k] for k in fm.knobs.KNOBS})
    return (
        label.replace("missing_rate", "missing")
        .replace("labeled_fraction 0.1", "10% labels")
        .replace("labeled_fraction 0.3", "30% labels")
        .replace("corrupted_fraction 0.3", "3 of 10 clients broken")
    )


def grid_table(df: pd.DataFrame, metric: str = "accuracy") -> str:
    """Setting x method, ``mean ± std`` over seeds, the best mean in bold."""
    s = E.summary(df, metric)
    s["setting"] = s.apply(_setting, axis=1)
    lines = ["| setting | " + " | ".join(fm.recipes.METHODS[m].label for m in METHODS) + " |"]
    lines.append("|---" * (len(METHODS) + 1) + "|")
    for setting, g in s.groupby("setting", sort=False):
        g = g.set_index("method")
        best = g["mean"].idxmax()
        cells = []
        for m in METHODS:
            text = f"{g.loc[m, 'mean']:.3f} ± {g.loc[m, 'std']:.3f}"
            cells.append(f"**{text}**" if m == best else text)
        lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def claims_markdown(table: pd.DataFrame) -> str:
    cols = ["paper", "claim", "setting", "metric", "method score", "baseline score",
            "difference", "95% interval", "seeds won", "verdict"]  # fmt: skip
    return markdown(table[cols], index=False)


def main(argv=None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args(argv)
    start = time.perf_counter()
    df = E.grid(METHODS, KNOBS, seeds=args.seeds, processes=args.processes)
    df.to_csv(ROOT / "docs" / "grid.csv", index=False)
    fig = grid_curves(df)
    fig.savefig(ROOT / "docs" / "grid.png", dpi=120, bbox_inches="tight")
    print(grid_table(df), flush=True)
    claims = E.run_claims(seeds=args.seeds, processes=args.processes)
    print()
    print(claims_markdown(E.claims_table(claims)))
    compute = df.seconds.sum() + claims[~claims.cached].seconds.sum()
    print(f"\n{len(df)} grid cells; {time.perf_counter() - start:.0f} s wall, "
          f"{compute:.0f} s of compute recorded by the cells (when they were trained)")  # fmt: skip
    return df


if __name__ == "__main__":
    main()
