"""The README's modality-completion tables: accuracy against the missing rate, per strategy.

    python -m benchmarks.completion            # 3 seeds, the full digits set
    python -m benchmarks.completion --quick    # tiny sizes, for a smoke test

Setting (notebook 05, at a larger scale): ``digits(5000)`` image + caption, one seed's own
pairing, holdout and partition per seed; 20% held out as the server's complete test set;
Dirichlet 0.5 over 10 clients; a share ``rate`` of each client's pairs loses one modality,
split evenly between losing the image and losing the caption (FedMVP's missing ratio); the
strategy completes the clients' data once, before training; FedAvg, 10 rounds, Adam at lr
1e-3, gradient norm clipped at 5; ``ModelSpec(d=64, hidden=128, unimodal=True,
frozen_towers=True)``, notebook 05's sweep model.

Four views of the global model, each the mean over the last 3 rounds: **clients**, each
client's own test split (missing like its training data, completed the same way), mean over
clients; and on the server's complete test set **both** modalities, **image only** and
**caption only**. Then mean and std over seeds, and each strategy minus masking, paired by
seed.

``unimodal=True`` matters beyond MCM and RAM: with cross-entropy alone the frozen towers'
representations are unused, but the joint embedding is put on the unit sphere before the
classifier. The rows ``mask, unimodal=False`` run masking on the same model without that
(and so without the towers), so that the sweep's baseline is not silently a normalised one.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

import fedlab_mm as fm
from fedlab_mm import completion as C
from fedlab_mm.federated import FedAvg, LocalTrainer, Simulation

from . import markdown

STRATEGIES = ("zero", "mask", "mean", "knn", "regression", "frozen")
RATES = (0.0, 0.2, 0.5, 0.8, 0.9)
PLAIN = "mask, unimodal=False"
LABELS = {"text": "caption only"}
VIEWS = ("clients", "both", "image only", "caption only")


def world(n_samples: int, seed: int, num_clients: int = 10):
    ds = fm.data.digits(n_samples=n_samples, modalities=("image", "text"), seed=seed)
    rest, test = fm.partition.holdout(ds, 0.2, seed=seed)
    base = fm.partition.dirichlet(rest, num_clients, alpha=0.5, seed=seed)
    return ds, rest, test, base


def one(world_, rate, strategy, seed, rounds, last=3, plain=False) -> dict:
    """One federation; the four views, each the mean over the last ``last`` rounds."""
    ds, rest, test, base = world_
    part = fm.partition.missing_modalities(
        base, ds, rate, split={"image": 0.5, "text": 0.5}, seed=seed
    )
    clients = C.complete(part.clients(rest, seed=seed), strategy)
    spec = fm.models.ModelSpec.from_dataset(ds, d=64, hidden=128, unimodal=not plain)
    trainer = LocalTrainer(optimizer="adam", lr=1e-3, max_grad_norm=5.0)
    sim = Simulation(clients, spec, trainer, FedAvg(), seed=seed, progress=False, eval_every=1)
    sim.run(rounds - last)
    model = fm.models.build_model(spec)
    views = []
    for _ in range(last):
        sim.run(1)
        model.load_state_dict(sim.global_state)
        views.append(C.views(model, test, labels=LABELS))
    out = pd.DataFrame(views).mean().to_dict()
    out["clients"] = sim.history.last(split="personal_init", rounds=last)
    return out


def tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per view: rate x strategy, ``mean ± std`` over seeds."""
    out = {}
    for view in VIEWS:
        g = df.groupby(["rate", "strategy"], sort=False)[view]
        cell = g.mean().map("{:.3f}".format) + " ± " + g.std().map("{:.3f}".format)
        out[view] = cell.unstack("strategy")
    return out


def paired_vs_mask(df: pd.DataFrame) -> pd.DataFrame:
    """Each strategy minus masking, seed by seed: ``mean ± std`` per rate and view."""
    rows = []
    for (rate, _seed), g in df.groupby(["rate", "seed"]):
        mask = g[g.strategy == "mask"].iloc[0]
        for _, r in g[g.strategy != "mask"].iterrows():
            rows.append(
                {"rate": rate, "strategy": r.strategy, **{v: r[v] - mask[v] for v in VIEWS}}
            )
    d = pd.DataFrame(rows).groupby(["rate", "strategy"], sort=False)
    return d.mean().map("{:+.3f}".format) + " ± " + d.std().map("{:.3f}".format)


def main(argv=None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 1 seed, 2 rates")
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args(argv)
    n, rounds = (400, 4) if args.quick else (5000, 10)
    seeds = range(1 if args.quick else args.seeds)
    rates = (0.0, 0.8) if args.quick else RATES
    strategies = ("mask", "regression") if args.quick else STRATEGIES
    start, rows = time.perf_counter(), []
    for seed in seeds:
        w = world(n, seed)
        for rate in rates:
            # with nothing missing every strategy is the same run
            for strategy in strategies if rate else strategies[:1]:
                out = one(w, rate, strategy, seed, rounds)
                names = strategies if not rate else (strategy,)
                rows += [{"rate": rate, "strategy": s, "seed": seed, **out} for s in names]
                print(rate, strategy, seed, {k: round(v, 3) for k, v in out.items()}, flush=True)
            if rate in (0.0, 0.8):
                out = one(w, rate, "mask", seed, rounds, plain=True)
                rows.append({"rate": rate, "strategy": PLAIN, "seed": seed, **out})
                print(rate, PLAIN, seed, {k: round(v, 3) for k, v in out.items()}, flush=True)
    df = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_rows", None):
        for view, table in tables(df).items():
            print(f"\n{view}\n{markdown(table)}")
        print("\nminus masking, paired by seed\n" + markdown(paired_vs_mask(df)))
    print(f"\n{time.perf_counter() - start:.0f} s")
    return df


if __name__ == "__main__":
    main()
