"""Rebuild the README's federated-broadcasting table (notebook 07's measured results).

    python -m benchmarks.broadcast            # 3 seeds x 3 skews x 9 variants (about 4 minutes)
    python -m benchmarks.broadcast --quick    # 1 seed, 1 skew, 2 variants, 2 rounds: a smoke test

Setting: the digits' images (5,000; 1,000 held out for the server), 10 Dirichlet clients,
10 rounds, one thread. Columns: the served models on the clients' own test splits (mean over
clients), the one global model on the server's test set, the served models on the classes each
client never held (server test set), and bytes per client and round.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import fedlab_mm as fm
from benchmarks import quick_args
from fedlab_mm import broadcast as B
from fedlab_mm.federated import Simulation, per_class_accuracy

VARIANTS = {
    "FedAlign": lambda: B.fedalign(),
    "full FedAvg": lambda: B.full_fedavg(),
    "plain average of the high adapters": lambda: B.fedalign(high_layers=0),
    "ex-query": lambda: B.fedalign(ex_query=True),
    "seen-class softmax": lambda: B.fedalign(seen_classes_only=True),
    "text tuned on prototypes": lambda: B.fedalign(text_steps=2),
    "text tuned on uploaded feature sets": lambda: B.fedalign(text_steps=2, share_features=True),
    "rank 1": lambda: B.fedalign(B.BroadcastSpec(rank=1)),
    "rank 16": lambda: B.fedalign(B.BroadcastSpec(rank=16)),
}


def never_held(sim, clients, test) -> float:
    """Mean over clients of the served model's accuracy on the classes it never held."""
    scores = []
    for c in clients:
        unseen = sorted(set(range(10)) - set(c.train.y.tolist()))
        if unseen:
            acc = per_class_accuracy(sim.served_model(c.client_id), test)
            scores.append(float(acc[unseen].mean()))
    return float(np.mean(scores)) if scores else float("nan")


def one_run(data, alpha: float, seed: int, variant: str, rounds: int) -> dict:
    rest, test = fm.partition.holdout(data, 0.2, seed=seed)
    clients = fm.partition.dirichlet(rest, 10, alpha=alpha, seed=seed).clients(rest, seed=seed)
    sim = Simulation(clients, *VARIANTS[variant](), seed=seed, global_test=test, progress=False,
                     eval_every=rounds)  # fmt: skip
    history = sim.run(rounds)
    kb = history.kilobytes()
    return {
        "alpha": alpha,
        "method": variant,
        "seed": seed,
        "served": history.final("accuracy", "global"),
        "server test": history.final("accuracy", "server_test"),
        "never held": never_held(sim, clients, test),
        "uplink KB": kb["uplink"],
        "downlink KB": kb["downlink"],
    }


def table(rows: list[dict]) -> str:
    """Mean ± std over seeds, as the README's markdown table."""
    df = pd.DataFrame(rows)
    lines = [
        "| Dirichlet alpha | method | served | server test | never held | uplink KB "
        "| downlink KB |",
        "|---|---|---|---|---|---|---|",
    ]
    for (alpha, method), g in df.groupby(["alpha", "method"], sort=False):
        cells = []
        for col in ("served", "server test", "never held"):
            v = g[col].dropna()
            cells.append(f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else
                         (f"{v.mean():.3f}" if len(v) else "-"))  # fmt: skip
        lines.append(
            f"| {alpha:g} | {method} | {' | '.join(cells)} | {g['uplink KB'].mean():.1f} "
            f"| {g['downlink KB'].mean():.1f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> str:
    args = quick_args(__doc__, argv)
    images = fm.data.digits(1000 if args.quick else 5000, modalities=("image",), progress=False)
    data = B.stem_features(images)
    seeds, alphas = ([0], [0.5]) if args.quick else ([0, 1, 2], [0.1, 0.5, 5.0])
    variants = ["FedAlign", "full FedAvg"] if args.quick else list(VARIANTS)
    rows = []
    for alpha in alphas:
        for variant in variants:
            if variant.startswith("rank") and alpha != 0.5:
                continue
            for seed in seeds:
                rows.append(one_run(data, alpha, seed, variant, 2 if args.quick else 10))
    out = table(rows)
    print(out)
    return out


if __name__ == "__main__":
    main()
