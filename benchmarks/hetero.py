"""Rebuild the README's heterogeneous-clients tables (notebook 08's measured results).

    python -m benchmarks.hetero            # recovery and accuracy over 5 seeds, transfer over 3
    python -m benchmarks.hetero --quick    # 1 seed, 2 methods, 2 rounds: a smoke test

Setting: the digits' images as the frozen tower's features, three tasks (digit, parity,
complement) x three model sizes x two clients = 18 clients, Dirichlet alpha 5 over the digits
inside each task group, one thread. The notebook's recipe, seed for seed: its three seeds are
this script's seeds 0-2.

- Group recovery: adjusted Rand index between the clusters of RELA's similarity matrix (task
  vectors after 5 rounds, no training needed) and the true task groups; mean ± std over seeds.
- Accuracy: personalised accuracy per model size, 50 training samples a client, 20 rounds of
  one local epoch. Each number is the mean of the last 3 rounds (``History.last``; the quick
  run has 2), then mean ± std over the seeds.
- Paired differences: each sharing method minus local-only training (and RELA minus its two
  controls), paired by seed, with a 95% confidence interval over the seeds (Student's t) and
  the verdict of :func:`fedlab_mm.experiments.verdict` for "better" with a practical margin of
  one point, the margin notebook 09 uses for FedMosaic.
- P/Q transfer (:func:`fedlab_mm.hetero.pq_transfer`): P/Q trained in one size, run in every
  size; per seed the mean over sizes of the no-adapter level and of the diagonal (own size),
  the mean over the six moves off the diagonal, and the share of the own-size gain that a move
  keeps, ``(moved - none) / (own - none)``; mean ± std over seeds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import fedlab_mm as fm
from benchmarks import quick_args
from fedlab_mm import hetero as H
from fedlab_mm.experiments import verdict
from fedlab_mm.federated import Simulation

SIZES = ("small", "medium", "large") * 2
# the comparisons and their pairs, as notebook 08 runs them (one table: fm.hetero.VARIANTS)
METHODS, LOCAL, PAIRS = H.VARIANTS, H.LOCAL, H.PAIRS
MARGIN = 0.01  # a gain smaller than one point is not worth the communication
LAST = 3  # rounds averaged

SETTINGS = {  # within-group Dirichlet alpha, training samples a client (None: all, about 220)
    "alpha 5, all samples": (5.0, None),
    "alpha 5, 50 samples": (5.0, 50),
    "alpha 1, all samples": (1.0, None),
}


def recovery_rows(data, seeds, noises=(0.0, 0.3, 1.0, 3.0), settings=SETTINGS) -> list[dict]:
    rows = []
    for setting in settings:
        alpha, size = SETTINGS[setting]
        for noise in noises:
            for seed in seeds:
                clients, _, groups = H.task_clients(data, sizes=SIZES, alpha=alpha,
                                                    train_size=size, seed=seed)  # fmt: skip
                vectors = H.client_task_vectors(clients, noise=noise, seed=seed)
                ari = H.group_recovery(H.relevance(vectors), groups)
                rows.append({"setting": setting, "noise": noise, "seed": seed, "ARI": ari})
    return rows


def last_by_size(history, specs, rounds: int = LAST) -> dict[str, float]:
    """Personalised accuracy per model size, averaged over the last ``rounds`` evaluated
    rounds (per round: :func:`fedlab_mm.hetero.accuracy_by_size`)."""
    evaluated = sorted(history.df.query("split == 'personal'")["round"].unique())[-rounds:]
    per_round = pd.DataFrame([H.accuracy_by_size(history, specs, int(r)) for r in evaluated])
    return per_round.mean().to_dict()


def accuracy_rows(data, seeds, methods, rounds: int) -> list[dict]:
    rows = []
    for seed in seeds:
        clients, specs, _ = H.task_clients(data, sizes=SIZES, train_size=50, seed=seed)
        for method in methods:
            sim = Simulation(clients, *METHODS[method](specs), seed=seed, progress=False)
            history = sim.run(rounds)  # evaluated every round
            rows += [{"method": method, "size": k, "seed": seed, "accuracy": v}
                     for k, v in last_by_size(history, specs).items()]  # fmt: skip
            rows.append({"method": method, "size": "all sizes", "seed": seed,
                         "accuracy": history.last("accuracy", "personal", LAST)})  # fmt: skip
    return rows


def transfer_rows(data, seeds, tasks=("parity", "complement"), steps: int = 300) -> list[dict]:
    rows = []
    for seed in seeds:
        for task in tasks:
            table = H.pq_transfer(data, task, steps=steps, seed=seed)
            none = table.loc["no P/Q"]
            moved = table.drop(index="no P/Q")  # rows: trained in; columns: run in
            values = moved.to_numpy()
            own, off = np.diag(values).mean(), values[~np.eye(len(values), dtype=bool)].mean()
            rows.append({"task": task, "seed": seed, "no P/Q": none.mean(), "own size": own,
                         "moved to another size": off,
                         "gain kept": (off - none.mean()) / (own - none.mean())})  # fmt: skip
    return rows


def _cell(values) -> str:
    v = pd.Series(values).dropna()
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def recovery_table(recovery: list[dict]) -> str:
    rec = pd.DataFrame(recovery)
    noises = sorted(rec["noise"].unique())
    lines = ["| task vectors from | " + " | ".join(f"noise {n:g}" for n in noises) + " |",
             "|---|" + "---|" * len(noises)]  # fmt: skip
    for setting, g in rec.groupby("setting", sort=False):
        cells = [_cell(g[g["noise"] == n]["ARI"]) for n in noises]
        lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def accuracy_table(accuracy: list[dict]) -> str:
    acc = pd.DataFrame(accuracy)
    sizes = list(dict.fromkeys(acc["size"]))  # the three sizes, then "all sizes"
    lines = ["| method | " + " | ".join(sizes) + " |", "|---|" + "---|" * len(sizes)]
    for method, g in acc.groupby("method", sort=False):
        cells = [_cell(g[g["size"] == s]["accuracy"]) for s in sizes]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def differences_table(accuracy: list[dict]) -> str:
    """Paired by seed: mean difference [95% CI] per size and over all sizes, and the verdict
    over all sizes. Empty with fewer than 2 seeds."""
    acc = pd.DataFrame(accuracy)
    if acc["seed"].nunique() < 2:
        return ""
    sizes = list(dict.fromkeys(acc["size"]))
    wide = acc.pivot_table(index=["method", "seed"], columns="size", values="accuracy")
    lines = ["| paired by seed | " + " | ".join(sizes) + " | verdict (all sizes) |",
             "|---|" + "---|" * (len(sizes) + 1)]  # fmt: skip
    for method, baseline in PAIRS:
        if method not in wide.index or baseline not in wide.index:
            continue
        d = wide.loc[method] - wide.loc[baseline]
        cells, word = [], ""
        for s in sizes:
            mean, low, high, word = verdict(d[s].to_numpy(), MARGIN)
            cells.append(f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]")
        lines.append(f"| {method} minus {baseline} | " + " | ".join(cells) + f" | {word} |")
    return "\n".join(lines)


def transfer_table(transfer: list[dict]) -> str:
    df = pd.DataFrame(transfer)
    columns = ("no P/Q", "own size", "moved to another size", "gain kept")
    lines = ["| P/Q trained on | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for task, g in df.groupby("task", sort=False):
        lines.append(f"| {task} | " + " | ".join(_cell(g[c]) for c in columns) + " |")
    return "\n".join(lines)


def main(argv=None) -> str:
    args = quick_args(__doc__, argv)
    images = fm.data.digits(2000 if args.quick else 5000, modalities=("image",), progress=False)
    data = H.tower_features(images)
    if args.quick:
        recovery = recovery_rows(data, [0], noises=(0.0,), settings=["alpha 5, 50 samples"])
        accuracy = accuracy_rows(data, [0], [LOCAL, "RELA, T 0.5"], rounds=2)
        transfer = transfer_rows(data, [0], tasks=("parity",), steps=60)
    else:
        recovery = recovery_rows(data, range(5))
        accuracy = accuracy_rows(data, range(5), list(METHODS), rounds=20)
        transfer = transfer_rows(data, range(3))
    parts = [recovery_table(recovery), accuracy_table(accuracy), differences_table(accuracy),
             transfer_table(transfer)]  # fmt: skip
    out = "\n\n".join(p for p in parts if p)
    print(out)
    return out


if __name__ == "__main__":
    main()
