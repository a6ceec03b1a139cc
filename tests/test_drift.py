"""fm.federated.client_drift: distance, spread and kept against a written-out computation."""

import numpy as np
import pytest
import torch

import fedlab_mm as fm

drift = fm.federated.client_drift


def _states(seed=0, n=4):
    g = torch.Generator().manual_seed(seed)
    start = {"w": torch.randn(3, 5, generator=g), "b": torch.randn(5, generator=g)}
    moved = [
        {k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in start.items()} for _ in range(n)
    ]
    return start, moved


def test_matches_the_formulas_written_out():
    start, moved = _states()
    sizes = np.array([10.0, 30.0, 5.0, 55.0])
    p = sizes / sizes.sum()
    w = np.concatenate([start[k].numpy().ravel() for k in start])
    deltas = np.stack([np.concatenate([s[k].numpy().ravel() for k in start]) - w for s in moved])
    step = p @ deltas
    travel = p @ np.linalg.norm(deltas, axis=1)
    spread = np.sqrt(p @ (np.linalg.norm(deltas - step, axis=1) ** 2))
    out = drift(start, moved, sizes)
    assert out["distance"] == pytest.approx(travel / np.linalg.norm(w), rel=1e-6)
    assert out["spread"] == pytest.approx(spread / np.linalg.norm(w), rel=1e-6)
    assert out["kept"] == pytest.approx(np.linalg.norm(step) / travel, rel=1e-6)


def test_agreeing_and_cancelling_clients():
    start = {"w": torch.ones(4)}
    same = drift(start, [{"w": torch.full((4,), 1.5)}] * 3)
    assert same == pytest.approx({"distance": 0.5, "spread": 0.0, "kept": 1.0})
    opposite = drift(start, [{"w": torch.full((4,), 1.5)}, {"w": torch.full((4,), 0.5)}])
    assert opposite == pytest.approx({"distance": 0.5, "spread": 0.5, "kept": 0.0})
    still = drift(start, [{"w": torch.ones(4)}])
    assert still == {"distance": 0.0, "spread": 0.0, "kept": 1.0}


def test_equal_weights_by_default_and_integer_tensors_ignored():
    start, moved = _states(1, n=3)
    with_steps = {**start, "steps": torch.tensor(3)}
    moved_steps = [{**s, "steps": torch.tensor(99)} for s in moved]
    assert drift(with_steps, moved_steps) == pytest.approx(drift(start, moved, [1, 1, 1]))


@pytest.mark.parametrize(
    ("states", "weights", "match"),
    [
        ([], None, "states is empty"),
        ([{"w": torch.ones(2)}], [1.0, 2.0], "one finite, non-negative weight per state"),
        ([{"w": torch.ones(2)}, {"w": torch.ones(2)}], [1.0, -1.0], "non-negative"),
        ([{"w": torch.ones(2)}], [0.0], "positive sum"),
        ([{"w": torch.ones(2)}], [float("inf")], "finite"),
        ([{"v": torch.ones(2)}], None, r"states\[0\] lacks"),
    ],
)
def test_bad_input_is_named(states, weights, match):
    with pytest.raises(ValueError, match=match):
        drift({"w": torch.ones(2)}, states, weights)


def test_degenerate_global_states_are_refused():
    with pytest.raises(ValueError, match="no floating-point"):
        drift({"n": torch.tensor(1)}, [{"n": torch.tensor(2)}])
    with pytest.raises(ValueError, match="all zeros"):
        drift({"w": torch.zeros(3)}, [{"w": torch.ones(3)}])
