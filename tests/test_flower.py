"""The kit on Flower's simulation engine (fedlab_mm.flower): the same global state as the
kit's engine for the same seed, clients and strategy. Needs the ``flower`` extra (Ray)."""

import pytest
import torch

import fedlab_mm as fm
from fedlab_mm import flower as FL
from fedlab_mm.cka_graph import CKAGraph
from fedlab_mm.federated import FedAvg, LocalTrainer, Recipe, Simulation


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


def test_the_cka_graph_gives_the_kit_engines_global_state_on_flower():
    # One Flower run (Ray's start-up is most of its 40 s). The CKA graph goes through every
    # part FedAvg does (the message, the clients' fits, the weighted average of their states)
    # and adds a server step that reads the clients' models, so it stands for both.
    clients, spec, probe = _setting()
    kit = Simulation(clients, spec, LocalTrainer(), CKAGraph(spec, probe), seed=3, progress=False)
    kit.run(2)
    recipe = Recipe(spec, LocalTrainer(), CKAGraph(spec, probe))
    state, history = FL.run_simulation(clients, recipe, 2, seed=3)
    assert list(state) == list(kit.global_state)
    for key, value in kit.global_state.items():  # same seeds; only float rounding differs
        torch.testing.assert_close(state[key], value, atol=1e-5, rtol=1e-4)
    assert sorted(history["client"].unique()) == [c.client_id for c in clients]
    served = history.groupby("round")["served-accuracy"].mean()
    kit_served = kit.history.curve(split="personal_init")
    assert served.tolist() == pytest.approx(kit_served.tolist(), abs=1e-6)
    # and a different seed gives a different state: the comparison can fail
    other = Simulation(clients, spec, LocalTrainer(), FedAvg(), seed=4, progress=False)
    other.run(2)
    assert not torch.allclose(other.global_state["head.weight"], state["head.weight"])
