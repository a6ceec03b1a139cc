import pytest
import torch

import fedlab_mm as fm
from fedlab_mm import federated as F
from fedlab_mm.aggregation import CKAGraph, importance
from fedlab_mm.client import ClientUpdate

DS = fm.data.synthetic(600, seed=0)
REST, SERVER = fm.partition.holdout(DS, 0.2, seed=0)
SPEC = fm.models.ModelSpec.from_dataset(DS, d=16, hidden=32)


def test_importance_weights_are_non_negative_and_sum_to_one():
    graph = torch.tensor([[1.0, 0.9, 0.2], [0.9, 1.0, 0.3], [0.2, 0.3, 1.0]])
    for centrality in ("degree", "eigenvector"):
        w = importance(graph, centrality)
        assert (w >= 0).all() and float(w.sum()) == pytest.approx(1.0)
        assert w[2] < w[0] and w[2] < w[1]  # the odd one out weighs least
    torch.testing.assert_close(
        importance(torch.ones(4, 4)), torch.full((4,), 0.25, dtype=torch.float64)
    )
    with pytest.raises(ValueError, match="centrality"):
        importance(graph, "pagerank")


def test_identical_client_models_give_uniform_weights_and_the_same_model_back():
    state = fm.models.build_model(SPEC, seed=1).state_dict()
    updates = [
        ClientUpdate(k, {n: v.clone() for n, v in state.items()}, 10 + k, {}) for k in range(4)
    ]
    strategy = CKAGraph(SPEC, SERVER)
    new = strategy.aggregate(1, fm.models.build_model(SPEC, seed=2).state_dict(), updates)
    torch.testing.assert_close(strategy.graph, torch.ones(4, 4, dtype=torch.float64))
    torch.testing.assert_close(strategy.weights, torch.full((4,), 0.25, dtype=torch.float64))
    for name, value in state.items():
        torch.testing.assert_close(new[name], value)


def test_the_server_only_uses_updates_and_its_own_probe():
    clients = fm.partition.iid(REST, 3, seed=0).clients(REST, seed=0)
    strategy = CKAGraph(SPEC, SERVER)
    seen = []
    original = strategy.similarity_graph

    def spy(updates):
        seen.extend(type(u).__name__ for u in updates)
        return original(updates)

    strategy.similarity_graph = spy
    F.simulate(clients, SPEC, F.LocalTrainer(), strategy, rounds=2, progress=False)
    assert set(seen) == {"ClientUpdate"}
    assert strategy.probe is SERVER and strategy.probe_size == len(SERVER)
    # the only data set the strategy holds is its own probe: no client's data reached it
    held = [v for v in vars(strategy).values() if isinstance(v, fm.MultimodalDataset)]
    assert held == [SERVER]
    client_data = [c.train for c in clients] + [c.test for c in clients]
    assert not any(v is d for v in vars(strategy).values() for d in client_data)


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="power"):
        CKAGraph(SPEC, SERVER, power=0)
    with pytest.raises(ValueError, match="probe set has 2"):
        CKAGraph(SPEC, SERVER.subset([0, 1]))
    with pytest.raises(ValueError, match="modalities"):
        CKAGraph(SPEC, fm.data.synthetic(50, dims={"a": 4, "b": 4}, seed=0))
    with pytest.raises(ValueError, match="representation="):
        strategy = CKAGraph(SPEC, SERVER, representation="nope")
        state = fm.models.build_model(SPEC).state_dict()
        strategy.aggregate(1, state, [ClientUpdate(0, state, 1, {}), ClientUpdate(1, state, 1, {})])


def test_corrupt_clients():
    clients = fm.partition.iid(REST, 3, seed=0).clients(REST, seed=0)
    out = fm.overlays.corrupt_clients(clients, [1], kind="flip")
    assert out[0] is clients[0]
    torch.testing.assert_close(out[1].train.y, (clients[1].train.y + 1) % 10)
    assert torch.equal(out[1].test.y, clients[1].test.y)  # tests stay clean
    noisy = fm.overlays.corrupt_clients(clients, [2], kind="noise", modality="audio")
    assert not torch.equal(noisy[2].train.modalities["audio"], clients[2].train.modalities["audio"])
    assert torch.equal(noisy[2].train.modalities["image"], clients[2].train.modalities["image"])
    with pytest.raises(ValueError, match="client_ids"):
        fm.overlays.corrupt_clients(clients, [7])
    with pytest.raises(ValueError, match="kind"):
        fm.overlays.corrupt_clients(clients, [1], kind="evil")


# ------------------------------------------------------------------ effect (synthetic data)
def _run(seed, broken_fraction, power):
    ds = fm.data.synthetic(3600, seed=seed)
    rest, server = fm.partition.holdout(ds, 1 / 6, seed=seed)
    probe, test = server.subset(slice(0, 200)), server.subset(slice(200, None))
    spec = fm.models.ModelSpec.from_dataset(ds, d=32, hidden=64)
    clients = fm.partition.iid(rest, 10, seed=seed).clients(rest, seed=seed)
    bad = list(range(round(broken_fraction * 10)))
    if bad:
        clients = fm.overlays.corrupt_clients(clients, bad, kind="noise", noise=10.0, seed=seed)
    out = {}
    for name, strategy in (("fedavg", F.FedAvg()), ("cka", CKAGraph(spec, probe, power=power))):
        history = F.simulate(
            clients,
            spec,
            F.LocalTrainer(),
            strategy,
            rounds=15,
            seed=seed,
            global_test=test,
            progress=False,
            eval_every=15,
        )
        out[name] = history.final()
    out["bad_weight"] = float(strategy.weights[: len(bad)].sum())
    return out


def test_cka_graph_downweights_noisy_clients_and_beats_fedavg(one_thread):
    # Measured, 30% of 10 IID clients with noise of 10x each feature's std, seeds 0/1/2:
    # power 4: accuracy gain over FedAvg 0.028 / 0.020 / 0.013, the noisy clients' total weight
    # 0.05 / 0.17 / 0.11 (their sample share is 0.3). FedMVP's plain degree (power 1): gains
    # -0.003 / 0.013 / -0.003, weight 0.27 / 0.29 / 0.27.
    runs = [_run(seed, 0.3, power=4.0) for seed in (0, 1, 2)]
    assert sum(r["cka"] - r["fedavg"] for r in runs) / 3 > 0.01
    assert max(r["bad_weight"] for r in runs) < 0.2


def test_cka_graph_ties_fedavg_on_iid_clients(one_thread):
    # Measured, seeds 0/1/2, power 1: differences 0.0025 / 0.0 / 0.0.
    for seed in (0, 1):
        run = _run(seed, 0.0, power=1.0)
        assert abs(run["cka"] - run["fedavg"]) <= 0.005
