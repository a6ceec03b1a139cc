"""The kit on Flower's simulation engine (fedlab_mm.flower): the same global state as the
kit's engine for the same seed, clients and strategy. Needs the ``flower`` extra (Ray).

The Ray test is marked ``flower_runtime``: ``make test`` runs it beside the suite, after the
deployment test, so that no two Flower runtimes start at once on two cores."""

import pytest
import torch

import fedlab_mm as fm
from fedlab_mm import flower as FL
from fedlab_mm.federated import FedAvg, LocalTrainer, Recipe
from fedlab_mm.recipes import METHODS
from tests.flower_check import TINY, assert_same_run, kit_run, largest_difference, views_and_recipes


def test_records_round_trip_keys_dtypes_and_empty_states():
    state = {"w": torch.randn(3, 2), "steps": torch.tensor(7), "mask": torch.tensor([True, False])}
    back = FL.from_record(FL.to_record(state))
    assert list(back) == list(state)
    for k in state:
        assert back[k].dtype == state[k].dtype and torch.equal(back[k], state[k])
    assert FL.from_record(FL.to_record({})) == {}


def test_bad_rounds_and_empty_clients_are_refused_before_ray_starts():
    clients, spec, _ = _setting()
    recipe = Recipe(spec, LocalTrainer(), FedAvg())
    with pytest.raises(ValueError, match="rounds=0 must be an integer >= 1"):
        FL.run_simulation(clients, recipe, 0)
    with pytest.raises(ValueError, match="clients is empty"):
        FL.run_simulation([], recipe, 2)


def _setting():
    ds = fm.data.synthetic(n_samples=500, seed=0)
    rest, server = fm.partition.holdout(ds, 0.2, seed=0)
    clients = fm.partition.dirichlet(rest, 3, alpha=0.5, seed=0).clients(rest, seed=0)
    spec = fm.models.ModelSpec.from_dataset(ds, d=16, hidden=32)
    return clients, spec, server


@pytest.mark.flower_runtime
def test_every_method_gives_the_kit_engines_numbers_on_flowers_simulation_engine():
    """All 14 grid methods in one Flower simulation (one Ray start, most of its minute): each
    equals the kit engine's run for the same seed, in the global state, every client's
    accuracy in every round and what the server keeps per client."""
    views, recipes = views_and_recipes(list(METHODS))
    results = FL.run_simulation(views, recipes, TINY.rounds, seed=0)
    assert list(results) == list(METHODS)
    gaps = {}
    for name, (state, rows) in results.items():
        kit = kit_run(name)
        assert_same_run(kit, state, rows, recipes[name].strategy)
        gaps[name] = (*largest_difference(kit, state, rows), round(rows.attrs["seconds"], 1))
    print("largest differences (weight, accuracy) and seconds on Flower:", gaps)
    # and a different seed gives a different state: the comparison can fail
    other = kit_run("fedavg", seed=1)
    assert not torch.allclose(
        other.global_state["head.weight"], results["fedavg"][0]["head.weight"]
    )
