"""RELA on its own (issue 26, part 1): one model size, three conflicting tasks, five clients a
task, few samples each; the served global branch and the model after local training.

    python -m benchmarks.rela_alone            # 4 sample sizes x 5 seeds x 5 methods, noise
    python -m benchmarks.rela_alone --quick    # 1 size, 1 seed, 2 rounds: a smoke test

Setting: the digits' images as the frozen tower's features; tasks digit, 9 - digit and
(digit + 2) mod 10 (:data:`fedlab_mm.hetero.CONFLICTING`: no digit has the same label in any
two), 5 small models (32x2) a task, Dirichlet alpha 5 over the digits inside each task,
``n`` training samples a client, 10 rounds of one local epoch (Adam, lr 1e-2), one thread.

- Similarity: the mean RELA similarity within each task and across tasks (task vectors after
  5 rounds, no training), to show the three tasks' vectors differ (two binary tasks would not:
  notebook 08).
- Accuracy (:func:`fedlab_mm.hetero.rela_alone`): ``served`` = the global branch RELA mixed,
  the gate forced to it, before local training (what RELA decides); ``personal`` = the model
  after local training. Each the mean of the last 3 rounds, then mean ± std over seeds, and
  paired differences with 95% intervals (Student's t over seeds).
- Noise: at 50 samples, group recovery (ARI) and RELA T 0.05's served accuracy against the
  task vectors' noise std.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

import fedlab_mm as fm
from benchmarks import markdown, quick_args
from fedlab_mm import hetero as H

SAMPLES = (10, 25, 50, 100)
NOISES = (0.0, 0.3, 1.0, 3.0, 10.0)  # the entries' RMS is about 0.75 (printed)
PAIRS = [("RELA, T 0.05", "uniform"), ("RELA, T 0.05", "oracle"), ("RELA, T 0.5", "uniform"),
         ("RELA, T 0.05", "local only"), ("oracle", "local only")]  # fmt: skip


def _pm(values) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0:.3f}"


def _interval(d) -> str:
    d = np.asarray(d, dtype=float)
    if len(d) < 2:
        return f"{d.mean():+.3f}"
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return f"{d.mean():+.3f} [{d.mean() - half:+.3f}, {d.mean() + half:+.3f}]"


def similarity_rows(data, seeds) -> list[dict]:
    rows = []
    for seed in seeds:
        clients, _, groups = H.task_clients(data, tasks=H.CONFLICTING, sizes=("small",) * 5,
                                            train_size=50, seed=seed)  # fmt: skip
        s, g = H.relevance(H.client_task_vectors(clients, seed=seed)), np.asarray(groups)
        off = ~np.eye(len(g), dtype=bool)
        row = {"seed": seed, "ARI": H.group_recovery(s, groups)}
        for t, task in enumerate(H.CONFLICTING):
            inside = (g[:, None] == t) & (g[None, :] == t) & off
            row[task] = float(s.numpy()[inside].mean())
        row["across tasks"] = float(s.numpy()[g[:, None] != g[None, :]].mean())
        rows.append(row)
    return rows


def main(argv=None) -> None:
    args = quick_args(__doc__, argv)
    seeds = range(1 if args.quick else 5)
    samples, rounds = ((50,), 2) if args.quick else (SAMPLES, 10)
    data = H.tower_features(fm.data.digits(2000 if args.quick else 5000, modalities=("image",),
                                           progress=False))  # fmt: skip
    sim = pd.DataFrame(similarity_rows(data, seeds))
    print("RELA similarity, 50 samples a client (mean over seeds):")
    print(sim.drop(columns="seed").mean().round(3).to_string())

    rows = []
    for n in samples:
        for seed in seeds:
            rows += H.rela_alone(data, n, seed=seed, rounds=rounds, last=min(3, rounds))
            print(f"n {n} seed {seed} done", flush=True)
    df = pd.DataFrame(rows)
    for point in ("served", "personal"):
        table = df.pivot_table(index="method", columns="n_train", values=point, aggfunc=_pm,
                               sort=False)  # fmt: skip
        print(f"\n{point} accuracy, mean ± std over {len(seeds)} seeds, by samples a client:")
        print(markdown(table))
        wide = df.pivot_table(index=["method", "seed"], columns="n_train", values=point)
        diffs = {}
        for a, b in PAIRS:
            if point == "served" and "local only" in (a, b):
                continue
            diffs[f"{a} - {b}"] = {n: _interval(wide.loc[a][n] - wide.loc[b][n]) for n in samples}
        print(f"\npaired differences ({point}), mean [95% interval]:")
        print(markdown(pd.DataFrame(diffs).T))

    noise_rows = []
    for noise in NOISES:
        for seed in seeds:
            clients, _, groups = H.task_clients(
                data, tasks=H.CONFLICTING, sizes=("small",) * 5, train_size=50, seed=seed
            )
            v = H.client_task_vectors(clients, noise=noise, seed=seed)
            (served,) = H.rela_alone(data, 50, seed=seed, rounds=rounds, last=min(3, rounds),
                                     noise=noise, methods=["RELA, T 0.05"])  # fmt: skip
            noise_rows.append({"noise": noise, "seed": seed, "ARI": H.group_recovery(
                H.relevance(v), groups), "served": served["served"]})  # fmt: skip
    clean = H.client_task_vectors(H.task_clients(data, tasks=H.CONFLICTING, sizes=("small",) * 5,
                                                 train_size=50)[0])  # fmt: skip
    print(f"\nnoise: task-vector entries have RMS {float(clean.pow(2).mean().sqrt()):.3f}")
    nf = pd.DataFrame(noise_rows)
    print(markdown(nf.groupby("noise")[["ARI", "served"]].agg(_pm)))


if __name__ == "__main__":
    main()
