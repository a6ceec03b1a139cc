"""Rebuild the README's heterogeneous-clients tables (notebook 08's measured results).

    python -m benchmarks.hetero            # group recovery (5 seeds) and accuracy (3 seeds)
    python -m benchmarks.hetero --quick    # 1 seed, 2 methods, 2 rounds: a smoke test

Setting: the digits' images as the frozen tower's features, three tasks (digit, parity,
complement) x three model sizes x two clients = 18 clients, Dirichlet alpha 5 over the digits
inside each task group, 50 training samples a client, one thread.

Group recovery: adjusted Rand index between the clusters of RELA's similarity matrix (task
vectors after 5 rounds, no training needed) and the true task groups.
Accuracy: personalised accuracy per model size after 20 rounds of one local epoch.
"""

from __future__ import annotations

import math

import pandas as pd

import fedlab_mm as fm
from benchmarks import quick_args
from fedlab_mm import hetero as H
from fedlab_mm.federated import Simulation

SIZES = ("small", "medium", "large") * 2
METHODS = {
    "local only": lambda specs: H.local_only(specs),
    "RELA, T 0.5": lambda specs: H.mosaic(specs, temperature=0.5),
    "RELA, T 0.05": lambda specs: H.mosaic(specs, temperature=0.05),
    "RELA, T 0.5, P/Q within a size only": lambda specs: H.mosaic(specs, share_pq=False),
    "uniform (T infinite)": lambda specs: H.mosaic(specs, temperature=math.inf),
}


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


def accuracy_rows(data, seeds, methods, rounds: int) -> list[dict]:
    rows = []
    for seed in seeds:
        clients, specs, _ = H.task_clients(data, sizes=SIZES, train_size=50, seed=seed)
        for method in methods:
            sim = Simulation(clients, *METHODS[method](specs), seed=seed, progress=False,
                             eval_every=rounds)  # fmt: skip
            by_size = H.accuracy_by_size(sim.run(rounds), specs)
            rows += [{"method": method, "size": k, "seed": seed, "accuracy": v}
                     for k, v in by_size.items()]  # fmt: skip
    return rows


def _cell(values) -> str:
    v = pd.Series(values).dropna()
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def tables(recovery: list[dict], accuracy: list[dict]) -> str:
    """Mean ± std over seeds, as the README's markdown tables."""
    rec = pd.DataFrame(recovery)
    noises = sorted(rec["noise"].unique())
    lines = ["| task vectors from | " + " | ".join(f"noise {n:g}" for n in noises) + " |",
             "|---|" + "---|" * len(noises)]  # fmt: skip
    for setting, g in rec.groupby("setting", sort=False):
        cells = [_cell(g[g["noise"] == n]["ARI"]) for n in noises]
        lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    acc = pd.DataFrame(accuracy)
    sizes = list(dict.fromkeys(acc["size"]))
    lines += ["", "| method | " + " | ".join(sizes) + " | all sizes |",
              "|---|" + "---|" * (len(sizes) + 1)]  # fmt: skip
    for method, g in acc.groupby("method", sort=False):
        cells = [_cell(g[g["size"] == s]["accuracy"]) for s in sizes]
        cells.append(_cell(g.groupby("seed")["accuracy"].mean()))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> str:
    args = quick_args(__doc__, argv)
    images = fm.data.digits(2000 if args.quick else 5000, modalities=("image",), progress=False)
    data = H.tower_features(images)
    if args.quick:
        recovery = recovery_rows(data, [0], noises=(0.0,), settings=["alpha 5, 50 samples"])
        accuracy = accuracy_rows(data, [0], ["local only", "RELA, T 0.5"], rounds=2)
    else:
        recovery = recovery_rows(data, range(5))
        accuracy = accuracy_rows(data, [0, 1, 2], list(METHODS), rounds=20)
    out = tables(recovery, accuracy)
    print(out)
    return out


if __name__ == "__main__":
    main()
