"""Co-LoRA across sizes (issue 26, part 2): P/Q transfer and the cross-size comparison, for a
family pretrained size by size and one grown from the small model.

    python -m benchmarks.colora_family            # 5 seeds; about 10 minutes on one thread
    python -m benchmarks.colora_family --quick    # 1 seed, 2 rounds: a smoke test

- P/Q transfer (:func:`fedlab_mm.hetero.pq_transfer`, 300 steps on 500 samples of a task),
  with the kit's Procrustes frames and with :func:`fedlab_mm.hetero.fitted_frames` (A fitted
  by MSE plus an orthogonality penalty, B by a ridge map, as the paper's code does [R]):
  per seed, the mean over sizes with no adapter and with their own P/Q, the mean over the six
  moves to another size, and the share of the own-size gain a move keeps; mean ± std.
- Across sizes (:func:`fedlab_mm.hetero.across_sizes`): the three conflicting tasks
  (:data:`fedlab_mm.hetero.CONFLICTING`), 2 clients of each size per task (6 a task, 18 in
  all), 50 samples a client, 10 rounds of one local epoch; local only, RELA at T 0.05 with
  P/Q mixed across sizes, and the same with P/Q kept within a size. Served and personal
  accuracy per size (mean of the last 3 rounds), mean ± std over seeds, and paired
  differences with 95% intervals.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

import fedlab_mm as fm
from benchmarks import markdown, quick_args
from benchmarks.rela_alone import _interval, _pm
from fedlab_mm import hetero as H

ACROSS, WITHIN = "RELA, T 0.05", "RELA, T 0.05, P/Q within a size"


ALIGNS = {"Procrustes": None, "fitted": H.fitted_frames}  # the kit's, the paper's way [R]


def transfer_rows(data, seeds, steps) -> list[dict]:
    rows = []
    for family, (frames, align), task, seed in itertools.product(
        H.FAMILIES, ALIGNS.items(), ("parity", "complement"), seeds
    ):
        t = H.pq_transfer(data, task, steps=steps, seed=seed, family=family, align=align)
        none, trained = t.loc["no P/Q"].mean(), t.drop(index="no P/Q").to_numpy()
        own, moved = trained.diagonal().mean(), trained[~np.eye(3, dtype=bool)].mean()
        rows.append({"family": family, "frames": frames, "task": task, "seed": seed,
                     "no P/Q": none, "own size": own, "moved": moved,
                     "gain kept": (moved - none) / (own - none)})  # fmt: skip
    return rows


def main(argv=None) -> None:
    args = quick_args(__doc__, argv)
    seeds = range(1 if args.quick else 5)
    rounds, steps = (2, 30) if args.quick else (10, 300)
    data = H.tower_features(fm.data.digits(2000 if args.quick else 5000, modalities=("image",),
                                           progress=False))  # fmt: skip
    tr = pd.DataFrame(transfer_rows(data, seeds, steps))
    cols = ["no P/Q", "own size", "moved", "gain kept"]
    print(f"P/Q transfer, mean ± std over {len(seeds)} seeds:")
    print(markdown(tr.groupby(["family", "frames", "task"])[cols].agg(_pm)))

    rows = []
    for family in H.FAMILIES:
        for seed in seeds:
            rows += H.across_sizes(data, 50, seed=seed, family=family, rounds=rounds,
                                   last=min(3, rounds))  # fmt: skip
            print(f"{family} seed {seed} done", flush=True)
    df = pd.DataFrame(rows)
    sizes = list(dict.fromkeys(df["size"]))
    for family in H.FAMILIES:
        part = df[df.family == family]
        for point in ("served", "personal"):
            table = part.pivot_table(index="method", columns="size", values=point, aggfunc=_pm,
                                     sort=False)[sizes]  # fmt: skip
            print(f"\n{family} family, {point} accuracy by size, mean ± std:")
            print(markdown(table))
        wide = part.pivot_table(index=["method", "seed"], columns="size",
                                values=["served", "personal"])  # fmt: skip
        diffs = {}
        for point, a, b in (("served", ACROSS, WITHIN), ("personal", ACROSS, WITHIN),
                            ("personal", ACROSS, "local only"),
                            ("personal", WITHIN, "local only")):  # fmt: skip
            d = wide.loc[a][point] - wide.loc[b][point]
            diffs[f"{point}: {a} - {b}"] = {s: _interval(d[s]) for s in sizes}
        print(f"\n{family} family, paired by seed, mean [95% interval]:")
        print(markdown(pd.DataFrame(diffs).T[sizes]))


if __name__ == "__main__":
    main()
