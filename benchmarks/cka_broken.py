"""The README's broken-client table for the CKA-graph server, with two probes side by side.

    python -m benchmarks.cka_broken            # 7 settings x 3 seeds (about 10 minutes)
    python -m benchmarks.cka_broken --quick    # tiny sizes, for a smoke test

Setting (notebook 06): ``synthetic(3600)``, 10 IID clients, some of them broken on their
training data, 15 rounds of SGD; the server holds 600 samples: 200 for a probe, 400 to test the
global model. Each number is the mean over the last 3 rounds, then mean and std over seeds.

Two probes (issue 20): the **held-out** split of the clients' own distribution, which no real
server has, and **another world**, ``synthetic(seed=1)``: data of the same shape that the
server can make itself (FedMVP's server synthesises its probe), drawn from other class
prototypes. The broken clients' weight is their share of the server's weights in the last
round (FedAvg: their share of the samples). A run that diverges (the engine raises on a NaN
loss; plain SGD at lr 0.05 can, on 10x feature noise) is left out of its cell's mean, and the
``count`` column says how many runs remain.
"""

from __future__ import annotations

import argparse

import pandas as pd

import fedlab_mm as fm
from fedlab_mm.cka_graph import CKAGraph
from fedlab_mm.federated import FedAvg, LocalTrainer, Simulation

SETTINGS = (
    ("IID, no broken client", "labels", 0.0),
    ("20% shuffled labels", "labels", 0.2),
    ("30% shuffled labels", "labels", 0.3),
    ("20% flipped labels (c -> c+1)", "flip", 0.2),
    ("30% flipped labels", "flip", 0.3),
    ("20% heavy feature noise (10x std)", "noise", 0.2),
    ("30% heavy feature noise", "noise", 0.3),
)


def world(n_samples: int, probe_size: int, num_clients: int = 10):
    ds = fm.data.synthetic(n_samples=n_samples, seed=0)
    rest, server = fm.partition.holdout(ds, 1 / 6, seed=0)
    probes = {
        "held out": server.subset(slice(0, probe_size)),
        "another world": fm.data.synthetic(n_samples=probe_size, seed=1),
    }
    test = server.subset(slice(probe_size, None))
    clients = fm.partition.iid(rest, num_clients, seed=0).clients(rest, seed=0)
    return clients, probes, test, fm.models.ModelSpec.from_dataset(ds, d=32, hidden=64)


def one(clients, spec, test, kind, fraction, make, seed, rounds, last=3) -> dict:
    bad = list(range(round(fraction * len(clients))))
    if bad:
        clients = fm.partition.corrupt_clients(clients, bad, kind=kind, noise=10.0, seed=seed)
    strategy = make()
    sim = Simulation(
        clients, spec, LocalTrainer(), strategy, seed=seed, global_test=test, progress=False
    )
    accuracy = sim.run(rounds).curve().iloc[-last:].mean()
    if isinstance(strategy, CKAGraph):
        ids = strategy.client_ids
        weight = sum(strategy.weights[ids.index(k)] for k in bad)
    else:
        total = sum(len(c.train) for c in clients)
        weight = sum(len(clients[k].train) for k in bad) / total
    return {"accuracy": accuracy, "broken weight": float(weight)}


def main(argv=None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 1 seed, 2 settings")
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args(argv)
    n, probe_size, rounds = (900, 60, 2) if args.quick else (3600, 200, 15)
    seeds = range(1 if args.quick else args.seeds)
    settings = SETTINGS[:2] if args.quick else SETTINGS
    clients, probes, test, spec = world(n, probe_size)
    servers = {"FedAvg": FedAvg}
    for name, probe in probes.items():
        servers[f"CKA degree, {name}"] = lambda p=probe: CKAGraph(spec, p)
        servers[f"CKA power 4, {name}"] = lambda p=probe: CKAGraph(spec, p, power=4)
    rows = []
    for label, kind, fraction in settings:
        for seed in seeds:
            for server, make in servers.items():
                try:
                    out = one(clients, spec, test, kind, fraction, make, seed, rounds)
                except FloatingPointError as err:  # SGD at lr 0.05 can blow up on 10x noise
                    print(f"{label} {seed} {server}: diverged ({err})", flush=True)
                    out = {"accuracy": float("nan"), "broken weight": float("nan")}
                rows.append({"setting": label, "seed": seed, "server": server, **out})
                print(label, seed, server, {k: round(v, 3) for k, v in out.items()}, flush=True)
    df = pd.DataFrame(rows)
    table = df.groupby(["setting", "server"], sort=False)[["accuracy", "broken weight"]]
    summary = table.agg(["mean", "std", "count"]).round(3)  # count: the runs that finished
    with pd.option_context("display.width", 200, "display.max_rows", None):
        print(summary)
    return df


if __name__ == "__main__":
    main()
