"""The engine contract on paper (issue 23): per-client state in one base class, public state
helpers, pure loss functions, the model contract as Protocols, and the old module names."""

import math

import pytest
import torch

import fedlab_mm as fm
from fedlab_mm import federated as F
from fedlab_mm.losses import diversity, uniformity

DS = fm.data.synthetic(n_samples=240, seed=0)
CLIENTS = fm.partition.iid(DS, 3, seed=0).clients(DS, seed=0)
SPEC = fm.models.ModelSpec.from_dataset(DS, d=16, hidden=16)


# ------------------------------------------------------------------ state helpers
def test_flatten_and_unflatten_are_inverse_and_refuse_foreign_keys():
    states = {0: {"w": torch.ones(2)}, 12: {"a.b": torch.zeros(1), "c": torch.arange(3)}}
    flat = F.flatten(states)
    assert sorted(flat) == ["0/w", "12/a.b", "12/c"]
    back = F.unflatten(flat)
    assert back.keys() == states.keys()
    assert all(torch.equal(back[k][n], v) for k, s in states.items() for n, v in s.items())
    with pytest.raises(ValueError, match="'server/x' is not '<client_id>/<name>'"):
        F.unflatten({"server/x": torch.ones(1)})
    with pytest.raises(ValueError, match="not '<client_id>/<name>'"):
        F.unflatten({"nokey": torch.ones(1)})


def test_clone_state_is_detached_from_later_training():
    w = torch.ones(3, requires_grad=True)
    copy = F.clone_state({"w": w})
    with torch.no_grad():
        w.add_(1.0)
    assert torch.equal(copy["w"], torch.ones(3)) and not copy["w"].requires_grad
    assert F.state_bytes(copy) == 3 * 4


# ------------------------------------------------------------------ personalised servers
def test_every_personalised_server_keeps_its_states_in_the_one_base():
    assert issubclass(F.LocalOnly, F.PersonalizedStrategy)
    assert issubclass(fm.hetero.RELA, F.PersonalizedStrategy)
    assert issubclass(fm.broadcast.FedAlign, F.PersonalizedStrategy)
    for cls in (F.LocalOnly, fm.hetero.RELA, fm.broadcast.FedAlign):  # none re-implements it
        assert "state_dict" not in vars(cls) and "load_state_dict" not in vars(cls), cls


def test_a_personalised_server_checkpoints_served_and_server_state():
    class Keeper(F.PersonalizedStrategy):
        """Serves each client its own upload, and counts rounds in a server tensor."""

        has_global = False

        def setup(self, global_state, client_ids):
            super().setup(global_state, client_ids)
            self.rounds = torch.zeros(())

        def aggregate(self, rnd, global_state, updates):
            for u in updates:
                self.served[u.client_id] = F.clone_state(u.state)
            self.rounds += 1
            return global_state

        def server_state(self):
            return {"rounds": self.rounds}

        def load_server_state(self, state):
            self.rounds = state["rounds"]

    sim = F.Simulation(CLIENTS, SPEC, F.LocalTrainer(), Keeper(), progress=False)
    assert sim.strategy.message(0, sim.global_state) == {}  # nothing served before round 1
    sim.run(2)
    state = sim.strategy.state_dict()
    assert "server/rounds" in state and "0/head.weight" in state
    fresh = Keeper()
    fresh.setup({}, [0, 1, 2])
    fresh.load_state_dict(state)
    assert float(fresh.rounds) == 2
    assert torch.equal(fresh.served[2]["head.weight"], sim.strategy.served[2]["head.weight"])
    # the served state is what the client receives next round
    assert sim.strategy.message(1, sim.global_state) is sim.strategy.served[1]


def test_local_only_serves_each_client_its_own_weights():
    sim = F.Simulation(CLIENTS, SPEC, F.LocalTrainer(), F.LocalOnly(), progress=False)
    start = {k: v.clone() for k, v in sim.strategy.served[0].items()}
    sim.run(1)
    trained = sim.by_id[0].model.state_dict()
    assert all(torch.equal(sim.strategy.served[0][k], trained[k]) for k in trained)
    assert not all(torch.equal(start[k], trained[k]) for k in trained)


# ------------------------------------------------------------------ pure losses
def test_the_uniformity_loss_is_a_function_of_tensors():
    torch.manual_seed(0)
    spread = torch.nn.functional.normalize(torch.randn(64, 8), dim=1)
    collapsed = torch.nn.functional.normalize(torch.ones(64, 8) + 1e-3 * torch.randn(64, 8), dim=1)
    assert float(uniformity(collapsed)) > -0.01 > -1.0 > float(uniformity(spread))
    by_hand = torch.log(
        torch.exp(-2 * torch.cdist(spread, spread)[~torch.eye(64, dtype=bool)] ** 2).mean()
    )
    torch.testing.assert_close(uniformity(spread), by_hand)
    with pytest.raises(ValueError, match=r"n >= 2, got shape \(1, 8\)"):
        uniformity(spread[:1])


def test_diversity_is_what_the_fedepa_term_computes():
    torch.manual_seed(1)
    context = {"a": torch.randn(16, 4), "b": torch.randn(16, 4)}
    present = torch.ones(16, 2, dtype=torch.bool)
    present[:5, 1] = False
    features = {"aligned": context, "context": context, "present": present.float()}
    logits = torch.zeros(16, 1, requires_grad=True)
    batch = fm.losses.Batch(None, {}, present.float(), None, None, logits, {}, {}, features)
    term = fm.decomposition.Diversity(hinge=0.5)
    torch.testing.assert_close(term.compute(batch), diversity(context, present, 0.5))
    assert float(diversity(context, present, 0.5)) != float(diversity(context, present, 0.0))
    with pytest.raises(ValueError, match=r"present must be \(B, 2\)"):
        diversity(context, present[:, :1])


# ------------------------------------------------------------------ the model contract
def test_every_model_family_keeps_the_model_contract():
    models = {
        "MultimodalNet": fm.models.build_model(SPEC),
        "BroadcastNet": fm.models.build_model(fm.mini_clip.BroadcastSpec()),
        "HeteroNet": fm.models.build_model(fm.hetero.SIZES["small"]),
    }
    for name, model in models.items():
        assert isinstance(model, fm.models.FederatedModel), name
    for spec in (SPEC, fm.mini_clip.BroadcastSpec(), fm.hetero.SIZES["small"]):
        assert isinstance(spec, fm.models.ModelSpecLike), spec
    with pytest.raises(TypeError, match="must be a ModelSpec or have a build"):
        fm.models.build_model({"image": 3})


def test_per_client_specs_may_be_any_mapping():
    from types import MappingProxyType

    specs = MappingProxyType({c.client_id: SPEC for c in CLIENTS})
    sim = F.Simulation(CLIENTS, specs, F.LocalTrainer(), F.LocalOnly(), progress=False)
    assert sim.global_state == {} and len(sim.run(1)) > 0
    with pytest.raises(ValueError, match="personalised strategy"):
        F.Simulation(CLIENTS, specs, F.LocalTrainer(), F.FedAvg(), progress=False)


# ------------------------------------------------------------------ names
@pytest.mark.parametrize(
    "old, new",
    [("methods", "recipes"), ("strategies", "federated.server"), ("client", "federated.client"),
     ("similarity", "cka"), ("aggregation", "cka_graph"), ("transfer", "mcm_ram"),
     ("clip", "mini_clip"), ("frozen", "pretrained"), ("overlays", "partition.overlays"),
     ("skew", "partition.skew"), ("captions", "data.captions"), ("speech", "data.speech"),
     ("lora", "models.lora")],
)  # fmt: skip
def test_the_earlier_module_names_still_work(old, new):
    module = fm
    for part in new.split("."):
        module = getattr(module, part)
    assert getattr(fm, old) is module


def test_one_table_of_fedmosaic_variants():
    assert list(fm.hetero.VARIANTS)[0] == fm.hetero.LOCAL
    specs = {0: fm.hetero.SIZES["small"]}
    strategies = {k: build(specs).strategy for k, build in fm.hetero.VARIANTS.items()}
    assert isinstance(strategies["local only"], F.LocalOnly)
    assert strategies["uniform"].temperature == math.inf
    assert strategies["RELA, P/Q within a size"].share_pq is False
    assert all(a in fm.hetero.VARIANTS and b in fm.hetero.VARIANTS for a, b in fm.hetero.PAIRS)
