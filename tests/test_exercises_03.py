"""Tested solutions of the exercises of notebook 03 (personalization weights), at smoke scale.

At this scale (600 samples, 3 rounds) the models are still near chance, so the accuracy
differences the exercises ask about are noise; the tests assert what the mixing weights W
do instead, which is stable, and quote the accuracies in comments.
"""

import torch

import fedlab_mm as fm
from fedlab_mm.federated import FedAvg, LocalTrainer, Overwrite, Simulation
from fedlab_mm.personalization import ALA, ALAConfig

N_SAMPLES = 600  # the notebook's smoke-mode sizes
ROUNDS = 3
NUM_CLIENTS = 10

DS = fm.data.synthetic(n_samples=N_SAMPLES, seed=0)
REST, SERVER_TEST = fm.partition.holdout(DS, 0.2, seed=0)
SPEC = fm.models.ModelSpec.from_dataset(DS, d=32, hidden=64)


def dirichlet_clients(rest, alpha, seed=0):
    part = fm.partition.dirichlet(rest, NUM_CLIENTS, alpha=alpha, seed=seed)
    return part.clients(rest, seed=seed)


def run(clients, trainer, rounds=ROUNDS, spec=SPEC, seed=0):
    sim = Simulation(clients, spec, trainer, FedAvg(), seed=seed, progress=False)
    sim.run(rounds)
    return sim


def distance_from_global(sim):
    """The mean of 1 - W over every mixing weight of every client: 0 when all clients take
    the global model as it is (W = 1), larger the more they keep of their own."""
    weights = [
        w.flatten() for c in sim.clients for w in fm.personalization.mixing_weights(c).values()
    ]
    return float((1 - torch.cat(weights)).mean())


def personal_init(sim):
    """Per round: each client's model right after the init rule, on its own test split."""
    return sim.history.curve(split="personal_init")


def layer_choice(alpha, seed=0):
    """The notebook's `layer_table` for a Dirichlet `alpha`, keeping both ALA runs."""
    clients = dirichlet_clients(REST, alpha, seed)
    runs = {}
    for name, top in (("ours", ("fusion", "head")), ("FedALA", 2)):
        runs[name] = run(clients, LocalTrainer(init=ALA(ALAConfig(top_layers=top))), seed=seed)
    return runs


def test_exercise_1_layer_choice_with_less_skew():
    """The layer comparison above used Dirichlet 0.1. Add a setting with less skew,
    `SETTINGS["Dirichlet 1.0"] = dict(alpha=1.0, labeled=1.0, clip=None)`, and call
    `layer_table("Dirichlet 1.0")`: does the choice of layers matter more or less when there is
    less to personalise?"""
    skewed, less_skewed = layer_choice(0.1), layer_choice(1.0)
    # At alpha = 1 both layer choices give the same accuracy in every round (identical curves
    # on seeds 0-4). At alpha = 0.1 they were identical too but for one round of seed 4
    # (0.308 against 0.316): which layers are mixed does not show in accuracy at this scale.
    gap = (personal_init(less_skewed["ours"]) - personal_init(less_skewed["FedALA"])).abs()
    assert gap.max() <= 0.01
    # Less to personalise: the learned weights stay nearer 1 (the global model) for either
    # choice. Mean 1 - W at alpha = 0.1 -> 1.0, seeds 0-4:
    #   ours   1.7e-4 -> 3.7e-5, 2.0e-4 -> 4.0e-5, 2.3e-4 -> 3.4e-5, 2.0e-4 -> 3.7e-5,
    #          1.7e-4 -> 5.0e-5
    #   FedALA 2.9e-3 -> 5.8e-4, 2.9e-3 -> 6.1e-4, 3.3e-3 -> 5.0e-4, 3.3e-3 -> 5.3e-4,
    #          2.8e-3 -> 8.2e-4
    for name in ("ours", "FedALA"):
        assert distance_from_global(less_skewed[name]) < 0.5 * distance_from_global(skewed[name])


def first_learning_round(config, seed=0):
    """Two rounds under Dirichlet 0.1: round 1 trains locally, round 2 is ALA's first
    learning round (the notebook's `first_round_epochs`, keeping the whole run)."""
    clients = dirichlet_clients(REST, 0.1, seed)
    return run(clients, LocalTrainer(init=ALA(config)), rounds=2, seed=seed)


def epochs_of(sim):
    return [int(client.state["ala/epochs"]) for client in sim.clients]


def test_exercise_2_tiny_threshold():
    """Set `threshold` very small and `max_epochs=50`, with and without `shuffle=True`. How many
    epochs does the first round take (`client.state["ala/epochs"]`), and does accuracy
    improve?"""
    default = first_learning_round(ALAConfig())
    fixed = first_learning_round(ALAConfig(threshold=1e-6, max_epochs=50))
    shuffled = first_learning_round(ALAConfig(threshold=1e-6, max_epochs=50, shuffle=True))
    # FedALA's test stops every client at 11 epochs, the earliest it allows (seeds 0-4). A
    # threshold of 1e-6, which the loss std never reaches here, runs every client into the cap,
    # in either order (seeds 0-4).
    assert epochs_of(default) == [11] * NUM_CLIENTS
    assert epochs_of(fixed) == [50] * NUM_CLIENTS
    assert epochs_of(shuffled) == [50] * NUM_CLIENTS
    # The extra epochs move W further from 1 (mean 1 - W, seeds 0-4: 1.6e-4, 1.8e-4, 2.0e-4,
    # 1.8e-4, 1.6e-4 with the default test; 5.7e-4, 6.7e-4, 7.5e-4, 6.7e-4, 5.7e-4 after 50
    # fixed-order epochs, about the same reshuffled) ...
    for long_run in (fixed, shuffled):
        assert distance_from_global(long_run) > 2 * distance_from_global(default)
    # ... and accuracy improves a little or not at all: round 2, seeds 0-4, default 0.123,
    # 0.061, 0.151, 0.068, 0.140; 50 epochs 0.129, 0.075, 0.151, 0.092, 0.158 in both orders.
    assert personal_init(fixed).iloc[-1] >= personal_init(default).iloc[-1]


def fedavg_and_ala(ds, **trainer_options):
    """The notebook's Dirichlet 0.1 comparison on a data set: FedAvg's global model against
    ALA's mix, each client on its own test split."""
    rest, _ = fm.partition.holdout(ds, 0.2, seed=0)
    spec = fm.models.ModelSpec.from_dataset(ds, d=32, hidden=64)
    clients = dirichlet_clients(rest, 0.1)
    return {
        name: run(clients, LocalTrainer(init=init, **trainer_options), spec=spec)
        for name, init in (("FedAvg", Overwrite()), ("ALA", ALA()))
    }


def test_exercise_3_digits_gap():
    """Run the Dirichlet 0.1 comparison on `fm.data.digits` (use
    `LocalTrainer(optimizer="adam", lr=1e-3, init=...)`). Is the gap larger or smaller than on
    the synthetic data?"""
    digits = fm.data.digits(n_samples=N_SAMPLES, seed=0, progress=False)
    on_digits = fedavg_and_ala(digits, optimizer="adam", lr=1e-3)
    on_synthetic = fedavg_and_ala(DS)
    for runs in (on_digits, on_synthetic):
        # Round 1: no client has a model of its own yet, so ALA takes the global model.
        assert personal_init(runs["ALA"]).iloc[0] == personal_init(runs["FedAvg"]).iloc[0]
    # On digits the learned W stays nearer 1, so ALA's mix is closer to the global model than
    # on the synthetic data: less room for a gap. (Not because Adam moves the local weights
    # less: on seed 0 after round 2 their mean distance from the global top layers was larger
    # on digits, 7e-4 against 3e-4.) Mean 1 - W, seeds 0-4: digits 5.2e-5, 4.9e-5, 4.1e-5,
    # 5.4e-5, 5.1e-5; synthetic 1.7e-4, 2.0e-4, 2.3e-4, 2.0e-4, 1.7e-4.
    assert distance_from_global(on_digits["ALA"]) < 0.5 * distance_from_global(on_synthetic["ALA"])
    # The gap itself (ALA - FedAvg after 3 rounds) is not stable at this scale: digits 0.000,
    # 0.000, 0.000, -0.010, 0.000; synthetic 0.069, -0.004, 0.071, 0.146, 0.210 (seeds 0-4).
