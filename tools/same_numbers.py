"""Same seed, same numbers: a fingerprint of one small run of every mechanism.

A refactor must not change a single number. This runs every method of the grid's registry
(FedAvg, FedProx, local only, ALA, FedEPA, the three fills, the CKA graph, FedMVP, FedAlign
and its full-FedAvg baseline, RELA and its local-only baseline) at a tiny scale with two
seeds, plus the notebook-only recipes the registry does not hold, and prints a SHA-256 of
each run's whole ``History`` (every row except wall-clock seconds).

    python tools/same_numbers.py --save before.json     # before the change
    python tools/same_numbers.py --check before.json    # after it: exit 1 on any difference

Runs in about two minutes on one core.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import fedlab_mm as fm  # noqa: E402

SCALE = dict(n_samples=600, num_clients=4, rounds=3, probe=40)
SETTING = {"alpha": 0.5, "missing_rate": 0.3}
SEEDS = (0, 1)


def _digest(history) -> str:
    rows = [r for r in history.records if r[3] != "seconds"]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def _registry_runs() -> dict[str, str]:
    recipes = fm.recipes
    scale = recipes.Scale(**SCALE)
    out = {}
    for name, method in recipes.METHODS.items():
        for seed in SEEDS:
            setting = fm.knobs.check_setting(SETTING)
            clients, server = recipes._clients(setting, seed, scale)
            clients, recipe, test = method.build(clients, server, scale)
            history = fm.federated.simulate(
                clients, *recipe, rounds=scale.rounds, seed=seed, global_test=test, progress=False
            )
            out[f"{name}/seed{seed}"] = _digest(history)
            print(f"{name}/seed{seed}: {out[f'{name}/seed{seed}']}", flush=True)
    return out


def _notebook_runs() -> dict[str, str]:
    """Recipes the notebooks build by hand: FedEPA's ablations, the broadcast local-only
    baseline, FedProx through the engine's front door, and a resumed run."""
    ds = fm.data.synthetic(n_samples=300, seed=0)
    clients = fm.partition.dirichlet(ds, 4, alpha=0.5, seed=0).clients(ds, seed=0)
    out = {}
    recipes = {
        "fedepa_full": fm.decomposition.fedepa(ds, epochs=1),
        "fedepa_no_ala": fm.decomposition.fedepa(ds, epochs=1, personalize=False),
        "fedepa_orthogonal_mean": fm.decomposition.fedepa(
            ds, epochs=1, independence="orthogonal", fusion="mean"
        ),
    }
    for name, recipe in recipes.items():
        history = fm.federated.simulate(clients, *recipe, rounds=2, seed=3, progress=False)
        out[name] = _digest(history)
        print(f"{name}: {out[name]}", flush=True)
    return out


def _resumed_runs() -> dict[str, str]:
    """Each personalised server (and ALA's private state) through a checkpoint: two rounds,
    save, resume with a fresh recipe, one more round."""
    import tempfile

    recipes = fm.recipes
    scale = recipes.Scale(**SCALE)
    setting = fm.knobs.check_setting(SETTING)
    out = {}
    for name in ("local", "ala", "fedalign", "rela"):
        clients, server = recipes._clients(setting, 0, scale)
        clients, recipe, test = recipes.METHODS[name].build(clients, server, scale)
        sim = fm.federated.Simulation(clients, *recipe, seed=0, global_test=test, progress=False)
        sim.run(2)
        with tempfile.TemporaryDirectory() as tmp:
            sim.save(tmp)
            clients, server = recipes._clients(setting, 0, scale)
            clients, recipe, test = recipes.METHODS[name].build(clients, server, scale)
            sim = fm.federated.Simulation.resume(
                tmp, clients, *recipe, global_test=test, progress=False
            )
        out[f"{name}/resumed"] = _digest(sim.run(1))
        print(f"{name}/resumed: {out[f'{name}/resumed']}", flush=True)
    return out


def fingerprint() -> dict[str, str]:
    return {**_registry_runs(), **_notebook_runs(), **_resumed_runs()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--save", help="write the fingerprint to this JSON file")
    group.add_argument("--check", help="compare with a saved fingerprint; exit 1 on a change")
    args = parser.parse_args(argv)
    now = fingerprint()
    if args.save:
        with open(args.save, "w") as f:
            json.dump(now, f, indent=1, sort_keys=True)
        print(f"saved {len(now)} fingerprints to {args.save}")
        return 0
    with open(args.check) as f:
        before = json.load(f)
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    for key in changed:
        print(f"CHANGED {key}: {before.get(key)} -> {now.get(key)}")
    print(f"{len(now) - len(changed)} of {len(before.keys() | now.keys())} runs identical")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
