"""Rebuild the README's federated-broadcasting table (notebook 07's measured results).

    python -m benchmarks.broadcast            # 3 seeds, 3 skews, 21 rows (about 5 minutes)
    python -m benchmarks.broadcast --quick    # 1 seed, 1 skew, 3 variants, 2 rounds: a smoke test

Setting: the digits' images (5,000; 1,000 held out for the server), 10 Dirichlet clients,
10 rounds, one thread. Every number is the mean of the last 3 rounds (``History.last``; the
quick run has 2), then mean ± std over the seeds (each seed draws the holdout, the partition
and the training). Columns: *served*, the model the server holds for each client (FedAlign:
averaged low adapters + the client's own high adapters; FedAvg: the global model) on the
client's own test split, mean over clients; *after local epoch*, the same split scored on each
client's model after its local epoch of the round (split ``personal``: for full FedAvg that is
FedAvg + its local epoch, the fair personalised baseline; for local-only LoRA, the client's own
adapters, trained on its data alone); *server test*, the one global model on the server's test
set; *never held*, the served model (local-only: its own) on the classes absent from the
client's data (server test set, chance 0.1); bytes per client and round. The pretrained
encoder's row is the start every method shares, scored before any round.

Below the table: paired differences by seed, FedAlign's served models minus each baseline,
with a 95% confidence interval over the seeds (Student's t) and the seeds where FedAlign is
ahead.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import fedlab_mm as fm
from benchmarks import quick_args
from fedlab_mm import broadcast as B
from fedlab_mm.experiments import verdict
from fedlab_mm.federated import Simulation, evaluate

PRETRAINED = "pretrained encoder (no training)"
VARIANTS = {
    "FedAlign": lambda: B.fedalign(),
    "local-only LoRA (no communication)": lambda: B.local_only(),
    "full FedAvg": lambda: B.full_fedavg(),
    "plain average of the high adapters (`high_layers=0`)": lambda: B.fedalign(high_layers=0),
    "ex-query": lambda: B.fedalign(ex_query=True),
    "seen-class softmax": lambda: B.fedalign(seen_classes_only=True),
    "text tuned on prototypes (2 steps a round)": lambda: B.fedalign(text_steps=2),
    "text tuned on uploaded feature sets": lambda: B.fedalign(text_steps=2, share_features=True),
    "rank 1": lambda: B.fedalign(fm.mini_clip.BroadcastSpec(rank=1)),
    "rank 16": lambda: B.fedalign(fm.mini_clip.BroadcastSpec(rank=16)),
}
FEDALIGN, LOCAL, FEDAVG, PLAIN = list(VARIANTS)[:4]
RANKS = [v for v in VARIANTS if v.startswith("rank")]
# The rows of the README's table: every variant under strong skew, the ranks at the
# notebook's 0.5, the start, the method and its two baselines everywhere.
ROWS = {
    0.1: [PRETRAINED] + [v for v in VARIANTS if v not in RANKS],
    0.5: [PRETRAINED, FEDALIGN, LOCAL, FEDAVG, PLAIN, list(VARIANTS)[7], *RANKS],
    5.0: [PRETRAINED, FEDALIGN, LOCAL, FEDAVG],
}
LAST = 3  # rounds averaged


def one_run(data, alpha: float, seed: int, variant: str, rounds: int) -> dict:
    """One federation; its scores as the means of the last ``LAST`` rounds."""
    rest, test = fm.partition.holdout(data, 0.2, seed=seed)
    clients = fm.partition.dirichlet(rest, 10, alpha=alpha, seed=seed).clients(rest, seed=seed)
    if variant == PRETRAINED:
        return _pretrained(clients, test, alpha, seed)
    sim = Simulation(clients, *VARIANTS[variant](), seed=seed, global_test=test, progress=False)
    last = min(LAST, rounds)
    if rounds > last:
        sim.run(rounds - last)
    never = []
    for _ in range(last):  # the per-class scores are not in the history: take them per round
        sim.run(1)
        never.append(B.never_held(sim, test))
    history, kb = sim.history, sim.history.kilobytes()
    has_global = sim.strategy.has_global
    return {
        "alpha": alpha,
        "method": variant,
        "seed": seed,
        "served": history.last("accuracy", "global", last) if has_global else np.nan,
        "after local epoch": history.last("accuracy", "personal", last),
        "server test": history.last("accuracy", "server_test", last) if has_global else np.nan,
        "never held": float(np.mean(never)),
        "uplink KB": kb["uplink"],
        "downlink KB": kb["downlink"],
    }


def _pretrained(clients, test, alpha: float, seed: int) -> dict:
    """The shared start, before any round: the pretrained encoder through the anchors."""
    sim = Simulation(clients, *B.fedalign(), seed=seed, progress=False)
    model = fm.mini_clip.BroadcastSpec().build()
    own = [evaluate(model, c.data.test)["accuracy"] for c in sim.clients]
    return {
        "alpha": alpha,
        "method": PRETRAINED,
        "seed": seed,
        "served": float(np.mean(own)),
        "after local epoch": np.nan,
        "server test": evaluate(model, test)["accuracy"],
        "never held": B.never_held(sim, test),
        "uplink KB": 0.0,
        "downlink KB": 0.0,
    }


def _cell(values: pd.Series) -> str:
    v = values.dropna()
    if len(v) == 0:
        return "-"
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def table(rows: list[dict]) -> str:
    """Mean ± std over seeds, as the README's markdown table."""
    df = pd.DataFrame(rows)
    columns = ("served", "after local epoch", "server test", "never held")
    lines = [
        "| Dirichlet alpha | method | " + " | ".join(columns) + " | uplink KB | downlink KB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (alpha, method), g in df.groupby(["alpha", "method"], sort=False):
        cells = " | ".join(_cell(g[col]) for col in columns)
        lines.append(
            f"| {alpha:g} | {method} | {cells} | {g['uplink KB'].mean():.1f} "
            f"| {g['downlink KB'].mean():.1f} |"
        )
    return "\n".join(lines)


def paired(rows: list[dict]) -> str:
    """FedAlign's served models minus each baseline, paired by seed, per skew."""
    df = pd.DataFrame(rows)
    baselines = (
        (LOCAL, "after local epoch", "local-only LoRA (its own adapters)"),
        (FEDAVG, "after local epoch", "full FedAvg + its local epoch"),
        (FEDAVG, "served", "full FedAvg's global model"),
        (PLAIN, "served", "a plain average of the high adapters (`high_layers=0`)"),
    )
    lines = [
        "| Dirichlet alpha | FedAlign served minus | mean | 95% CI | seeds FedAlign ahead |",
        "|---|---|---|---|---|",
    ]
    for alpha, g in df.groupby("alpha", sort=False):
        ours = g[g.method == FEDALIGN].set_index("seed")["served"]
        for method, column, label in baselines:
            theirs = g[g.method == method].set_index("seed")[column]
            d = (ours - theirs).dropna()
            if len(d) < 2:
                continue
            mean, low, high, _ = verdict(d.to_numpy())
            lines.append(
                f"| {alpha:g} | {label} | {mean:+.3f} | [{low:+.3f}, {high:+.3f}] "
                f"| {int((d > 0).sum())}/{len(d)} |"
            )
    return "\n".join(lines) if len(lines) > 2 else ""


def main(argv=None) -> str:
    args = quick_args(__doc__, argv)
    images = fm.data.digits(1000 if args.quick else 5000, modalities=("image",), progress=False)
    data = fm.mini_clip.stem_features(images)
    seeds = [0] if args.quick else [0, 1, 2]
    plan = {0.5: [FEDALIGN, LOCAL, FEDAVG]} if args.quick else ROWS
    rows = []
    for alpha, variants in plan.items():
        for variant in variants:
            for seed in seeds:
                rows.append(one_run(data, alpha, seed, variant, 2 if args.quick else 10))
    out = table(rows)
    differences = paired(rows)
    if differences:
        out += "\n\n" + differences
    print(out)
    return out


if __name__ == "__main__":
    main()
