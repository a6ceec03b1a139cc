import numpy as np
import pytest
import torch

import fedlab_mm as fm
from fedlab_mm import federated as F
from fedlab_mm.federated import Client
from fedlab_mm.models import ModelSpec
from fedlab_mm.personalization import ALA, ALAConfig, mixing_weights, top_parameter_names
from tests.effects import served_with_init

DS = fm.data.synthetic(n_samples=600, dims={"image": 12, "text": 8}, seed=0)
SPEC = ModelSpec.from_dataset(DS, d=8, hidden=16)
CLIENTS = fm.partition.dirichlet(DS, 3, alpha=0.3, min_size=30, seed=0).clients(DS, seed=0)
TOP = [
    "fusion.net.0.weight",
    "fusion.net.0.bias",
    "fusion.net.2.weight",
    "fusion.net.2.bias",
    "head.weight",
    "head.bias",
]


def trained_client(config=None, data=CLIENTS[0]):
    """A client that has trained once, so it holds a local model different from the global."""
    client = Client(data, SPEC, F.LocalTrainer(init=ALA(config)))
    client.model.load_state_dict(fm.models.build_model(SPEC, seed=0).state_dict())
    client.fit(fm.models.build_model(SPEC, seed=0).state_dict(), rnd=1, seed=0)
    return client


def other_global():
    return fm.models.build_model(SPEC, seed=5).state_dict()


def test_top_layer_selection():
    model = fm.models.build_model(SPEC)
    assert top_parameter_names(model, ("fusion", "head")) == TOP
    assert top_parameter_names(model, 2) == ["head.weight", "head.bias"]
    with pytest.raises(ValueError, match="exceeds"):
        top_parameter_names(model, 99)
    with pytest.raises(ValueError, match="match no parameters"):
        top_parameter_names(model, ("classifier",))
    with pytest.raises(ValueError, match="every parameter"):
        top_parameter_names(model, ("encoders", "fusion", "head"))


def _mix_with(client, weight_value, received):
    for name in TOP:
        client.state["ala/" + name] = torch.full_like(
            dict(client.model.named_parameters())[name], weight_value
        )
    client.state["ala/started"] = torch.tensor(1)
    before = {k: v.clone() for k, v in client.model.state_dict().items()}
    ALA(ALAConfig(eta=1e-12))(client, received, rnd=2)  # a tiny eta: W stays where we put it
    return before, client.model.state_dict()


def test_weight_one_gives_the_global_top_layers_and_lower_layers_are_global():
    client, received = trained_client(), other_global()
    _, after = _mix_with(client, 1.0, received)
    for key in received:
        torch.testing.assert_close(after[key], received[key], atol=1e-6, rtol=0)


def test_weight_zero_keeps_the_previous_local_top_layers():
    client, received = trained_client(), other_global()
    before, after = _mix_with(client, 0.0, received)
    for key in received:
        expected = before[key] if key in TOP else received[key]
        torch.testing.assert_close(after[key], expected, atol=1e-6, rtol=0)


def test_identical_global_and_local_is_a_no_op():
    client = trained_client()
    before = {k: v.clone() for k, v in client.model.state_dict().items()}
    ALA()(client, before, rnd=2)
    for key, value in client.model.state_dict().items():
        assert torch.equal(value, before[key])


@pytest.mark.parametrize("granularity", ["element", "layer"])
def test_weights_stay_in_range_keep_shapes_and_persist(granularity):
    client = trained_client(ALAConfig(granularity=granularity, max_epochs=3))
    ALA(ALAConfig(granularity=granularity, max_epochs=3))(client, other_global(), rnd=2)
    weights = mixing_weights(client)
    assert sorted(weights) == sorted(TOP)
    params = dict(client.model.named_parameters())
    for name, w in weights.items():
        assert w.min() >= 0 and w.max() <= 1
        assert w.shape == (params[name].shape if granularity == "element" else ())
    assert any((w < 1).any() for w in weights.values())  # it learned something
    assert int(client.state["ala/epochs"]) <= 3


def test_first_round_is_capped_and_later_rounds_take_one_epoch():
    cfg = ALAConfig(threshold=1e-9, max_epochs=4)  # never converges: the cap must stop it
    client = trained_client(cfg)
    ALA(cfg)(client, other_global(), rnd=2)
    assert int(client.state["ala/epochs"]) == 4
    ALA(cfg)(client, other_global(), rnd=3)
    assert int(client.state["ala/epochs"]) == 1


def test_weight_learning_never_reads_unlabeled_labels():
    part = fm.partition.scarce_labels(fm.partition.iid(DS, 1), 0.2, seed=0)
    data = part.clients(DS, test_fraction=0.0)[0]
    poisoned_y = data.train.y.clone()
    poisoned_y[~data.train.labeled] = 999  # an out-of-range label would crash cross-entropy
    train = data.train.replace()  # a copy that passed validation with the real labels ...
    object.__setattr__(train, "y", poisoned_y)  # ... then poison the unlabeled entries only
    client = Client(fm.partition.ClientData(0, train, data.test), SPEC, F.LocalTrainer())
    client.rounds_trained = 1
    ALA(ALAConfig(max_epochs=2, sample_fraction=1.0))(client, other_global(), rnd=2)
    assert int(client.state["ala/epochs"]) >= 1


def test_no_labels_means_no_learning_but_still_mixing():
    part = fm.partition.scarce_labels(fm.partition.iid(DS, 1), 0.0)
    data = part.clients(DS, test_fraction=0.0)[0]
    client = trained_client(data=data)
    ALA()(client, other_global(), rnd=2)
    assert "ala/epochs" not in client.state
    assert all(bool((w == 1).all()) for w in mixing_weights(client).values())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eta": 0}, "eta"),
        ({"eta": -1}, "eta"),
        ({"sample_fraction": 0}, "sample_fraction"),
        ({"sample_fraction": 1.5}, "sample_fraction"),
        ({"top_layers": 0}, "top_layers"),
        ({"top_layers": ()}, "top_layers"),
        ({"granularity": "neuron"}, "granularity"),
        ({"threshold": 0}, "threshold"),
        ({"max_epochs": 0}, "max_epochs"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ALAConfig(**kwargs)


def test_top_layers_larger_than_the_model_fails_clearly_in_a_run():
    trainer = F.LocalTrainer(init=ALA(ALAConfig(top_layers=500)))
    with pytest.raises(ValueError, match="exceeds"):
        F.simulate(CLIENTS, SPEC, trainer, F.FedAvg(), rounds=2, progress=False)


def test_ala_state_survives_a_checkpoint(tmp_path):
    trainer = F.LocalTrainer(init=ALA(ALAConfig(max_epochs=3)))
    whole = F.simulate(CLIENTS, SPEC, trainer, F.FedAvg(), rounds=4, progress=False)
    sim = F.Simulation(CLIENTS, SPEC, trainer, F.FedAvg(), progress=False)
    sim.run(2)
    sim.save(tmp_path)
    resumed = F.Simulation.resume(tmp_path, CLIENTS, SPEC, trainer, F.FedAvg(), progress=False)
    assert mixing_weights(resumed.by_id[0])
    assert resumed.run(2) == whole


def test_ala_ties_fedavg_on_iid_clients():
    # Measured (3000 synthetic samples, 10 IID clients, 15 rounds, the model right after the
    # init rule), seeds 0-4: ALA minus FedAvg 0.000 / 0.000 / -0.002 / 0.002 / 0.000. With
    # nothing to personalise, ALA's mix gives the global model back. (ALA's gain under label
    # skew, and its switch-off, are in tests/effects.py.)
    gap = served_with_init("ala", 0, alpha=0) - served_with_init("overwrite", 0, alpha=0)
    assert abs(gap) < 0.02


def test_label_scarce_divergence_is_caught_and_gradient_clipping_prevents_it():
    # A real failure, found while measuring: 5% labels, Dirichlet 0.1, seed 1. Client 2 holds
    # 583 samples but 29 labels, its SGD (lr 0.05, momentum 0.9) blows up in round 9 (loss
    # ~1e9), FedAvg averages that in, and round 10 turns NaN. With ALA's fixed-order slice
    # (FedALA's, since issue 20) client 2's own loss is already NaN in round 9. The guard must
    # name the place; clipping the gradient norm must avoid it.
    ds = fm.data.synthetic(3000, seed=1)
    rest, _ = fm.partition.holdout(ds, 0.2, seed=1)
    part = fm.partition.dirichlet(rest, 10, alpha=0.1, seed=1)
    clients = fm.partition.scarce_labels(part, 0.05, seed=1).clients(rest, seed=1)
    spec = ModelSpec.from_dataset(ds, d=32, hidden=64)
    with pytest.raises(FloatingPointError, match="round 9, client 2: loss term 'ce'"):
        F.simulate(
            clients,
            spec,
            F.LocalTrainer(init=ALA()),
            F.FedAvg(),
            rounds=10,
            seed=1,
            progress=False,
            eval_every=10,
        )
    history = F.simulate(
        clients,
        spec,
        F.LocalTrainer(init=ALA(), max_grad_norm=5.0),
        F.FedAvg(),
        rounds=10,
        seed=1,
        progress=False,
        eval_every=10,
    )
    assert np.isfinite(history.df.value).all()


def test_first_phase_is_deterministic_and_stops_by_fedalas_test():
    # FedALA's code iterates its random contiguous slice unshuffled: with the same seed the
    # same W and the same stop; the stop comes from the std test, after more than 10 epochs
    results = []
    for _ in range(2):
        client = trained_client()
        torch.manual_seed(7)
        ALA()(client, other_global(), rnd=2)
        results.append((mixing_weights(client), int(client.state["ala/epochs"])))
    (w1, e1), (w2, e2) = results
    assert e1 == e2 and all(torch.equal(w1[n], w2[n]) for n in w1)
    assert ALAConfig().window < e1 < ALAConfig().max_epochs, e1


def test_fixed_order_lets_the_convergence_test_stop_where_a_reshuffle_runs_to_the_cap():
    # Measured, synthetic(3000), Dirichlet 0.1, 10 clients, first ALA round (round 2), seeds
    # 0-4: fixed order (FedALA) stopped at 11-13 epochs for all 50 clients; reshuffling every
    # epoch (the kit's first version) took 11-20 and hit the 20-epoch cap for 4 of 50 clients,
    # 1 on seed 1 and 2 on seed 3 (the two seeds used here).
    for shuffle, check in ((False, lambda e: max(e) <= 13), (True, lambda e: max(e) == 20)):
        epochs = []
        for seed in (1, 3):
            ds = fm.data.synthetic(3000, seed=seed)
            rest, _ = fm.partition.holdout(ds, 0.2, seed=seed)
            clients = fm.partition.dirichlet(rest, 10, alpha=0.1, seed=seed).clients(
                rest, seed=seed
            )
            spec = ModelSpec.from_dataset(ds, d=32, hidden=64)
            trainer = F.LocalTrainer(init=ALA(ALAConfig(shuffle=shuffle)))
            sim = F.Simulation(clients, spec, trainer, F.FedAvg(), seed=seed, progress=False)
            sim.run(2)
            epochs += [int(c.state["ala/epochs"]) for c in sim.clients]
        assert check(epochs), (shuffle, epochs)
