"""What the Flower tests compare: a kit engine's run against the same method run on Flower
(loopback grid, Ray simulation or a real deployment), for the same seed and clients."""

import pytest
import torch

import fedlab_mm as fm
from fedlab_mm.federated import Simulation
from fedlab_mm.recipes import METHODS, Scale

TINY = Scale(n_samples=600, num_clients=4, rounds=2, epochs=1, last=1)
SETTING = fm.knobs.check_setting({"missing_rate": 0.3, "alpha": 0.5})


def views_and_recipes(methods, seed=0, scale=TINY):
    """``(views, recipes)``: each method's view of the same clients and its recipe, by name
    (each recipe with its own fresh server, as each Flower run needs)."""
    clients, server = fm.recipes._clients(SETTING, seed, scale)
    views, recipes = {}, {}
    for name in methods:
        views[name], recipes[name], _ = METHODS[name].build(clients, server, scale)
    return views, recipes


def kit_run(method, seed=0, scale=TINY) -> Simulation:
    """The kit engine's run of ``method`` on the clients of :func:`views_and_recipes`."""
    views, recipes = views_and_recipes([method], seed, scale)
    kit = Simulation(views[method], *recipes[method], seed=seed, progress=False)
    kit.run(scale.rounds)
    return kit


def assert_same_run(kit: Simulation, state: dict, rows, strategy=None) -> None:
    """Flower's global ``state``, its clients' evaluation ``rows`` and (for personalised
    strategies) what its ``strategy`` keeps per client equal the kit run's, up to float
    rounding; and every client answered every round."""
    assert list(state) == list(kit.global_state)  # both empty for personalised strategies
    for key, value in kit.global_state.items():
        torch.testing.assert_close(state[key], value, atol=1e-5, rtol=1e-4)
    df = kit.history.df
    personal = df[(df.split == "personal") & (df.metric == "accuracy")]
    assert len(rows) == len(personal) > 0
    for (rnd, client), value in personal.set_index(["round", "client"]).value.items():
        row = rows[(rows["round"] == rnd) & (rows["client"] == client)]
        assert row["personal-accuracy"].item() == pytest.approx(value, abs=1e-6), (rnd, client)
    served = getattr(kit.strategy, "served", None)
    if served is not None and strategy is not None:
        assert sorted(strategy.served) == sorted(served)
        for cid, kept in served.items():
            assert list(strategy.served[cid]) == list(kept)
            for key, value in kept.items():
                torch.testing.assert_close(strategy.served[cid][key], value, atol=1e-5,
                                           rtol=1e-4)  # fmt: skip


def largest_difference(kit: Simulation, state: dict, rows) -> tuple[float, float]:
    """The largest gap between the two runs: in a global weight, and in a client accuracy."""
    weights = max((float((state[k] - v).abs().max()) for k, v in kit.global_state.items()),
                  default=0.0)  # fmt: skip
    df = kit.history.df
    personal = df[(df.split == "personal") & (df.metric == "accuracy")]
    gaps = [abs(rows[(rows["round"] == r) & (rows["client"] == c)]["personal-accuracy"].item() - v)
            for (r, c), v in personal.set_index(["round", "client"]).value.items()]  # fmt: skip
    return weights, max(gaps)
