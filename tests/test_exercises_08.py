"""Tested solutions of the exercises of notebook 08 (heterogeneous clients), at small scale.

The notebook's setting, shrunk: 1,200 digits through the frozen public tower (enough for 18
clients of up to 50 training samples), `H.task_clients(data, train_size=..., seed=0)`,
2 rounds of one local epoch.
"""

from functools import cache

import numpy as np
import pandas as pd
import torch

import fedlab_mm as fm
from fedlab_mm import hetero as H
from fedlab_mm.federated import Simulation

ROUNDS = 2
DATA = H.tower_features(fm.data.digits(1200, modalities=("image",), progress=False))


def mean_accuracy(clients, recipe):
    """The notebook's number: mean personalised accuracy over the sizes after ROUNDS."""
    sim = Simulation(clients, *recipe, seed=0, progress=False, eval_every=ROUNDS)
    by_size = H.accuracy_by_size(sim.run(ROUNDS), recipe.spec)
    return float(np.mean(list(by_size.values())))


def test_exercise_1_twenty_samples_a_client():
    """Give each client 20 samples instead of 50 (`train_size=20` in `H.task_clients`). Does
    the gap between local training and RELA open up? And the group recovery?"""
    clients, specs = {}, {}
    for n in (20, 50):
        clients[n], specs[n], _ = H.task_clients(DATA, train_size=n, seed=0)
    assert [len(c.train) for c in clients[20]] == [20] * 18
    assert max(len(c.train) for c in clients[50]) == 50

    # Group recovery (adjusted Rand index), seeds 0-4: 1.00 0.58 0.69 0.46 0.49 with 20
    # samples a client, 1.00 0.69 0.83 0.43 1.00 with 50. It falls on average (0.64 against
    # 0.79), not on every seed, so the mean over the five seeds is what is checked.
    recovery = {}
    for n in (20, 50):
        scores = []
        for seed in range(5):
            cl, _, gr = H.task_clients(DATA, train_size=n, seed=seed)
            scores.append(H.group_recovery(H.relevance(H.client_task_vectors(cl, seed=seed)), gr))
        recovery[n] = np.mean(scores)
    assert recovery[20] < recovery[50] - 0.05

    accuracy = {
        (n, name): mean_accuracy(clients[n], make(specs[n]))
        for n in (20, 50)
        for name, make in (("local", H.local_only), ("RELA", H.mosaic))
    }
    # Fewer samples, lower accuracy for both: seeds 0-4, local 0.380 0.387 0.371 0.398 0.313
    # with 20 against 0.462 0.529 0.509 0.528 0.444 with 50; RELA 0.376 0.378 0.390 0.402
    # 0.323 against 0.431 0.519 0.496 0.543 0.459.
    for name in ("local", "RELA"):
        assert accuracy[20, name] < accuracy[50, name] - 0.03
    # The gap itself (RELA minus local) is noise after 2 rounds: -0.004 -0.009 +0.019
    # +0.004 +0.010 with 20 samples, -0.031 -0.010 -0.013 +0.015 +0.015 with 50; the
    # notebook's full run answers it. Structurally, RELA differs from local training:
    assert accuracy[20, "RELA"] != accuracy[20, "local"]


def mean_between(similarity, groups, i, j):
    """Mean similarity between the clients of task ``i`` and those of task ``j`` (without
    each client's similarity to itself)."""
    block = similarity[np.ix_(groups == i, groups == j)]
    return block[~np.eye(len(block), dtype=bool)].mean() if i == j else block.mean()


def test_exercise_2_a_fourth_task():
    """Add a fourth task, `high` (1 for the digits 5-9, 0 for 0-4): `H.task_clients(data,
    tasks=H.ALL_TASKS, train_size=50)`, with labels built from `H.ALL_TASKS` instead of
    `H.TASKS` (and `short["high"] = "high"`). Can the server tell `high` from parity?"""
    short = {"digit": "digit", "parity": "parity", "complement": "compl."}  # the notebook's
    short["high"] = "high"
    parity, high = H.ALL_TASKS.index("parity"), H.ALL_TASKS.index("high")
    for seed in range(5):
        clients, specs, groups = H.task_clients(DATA, tasks=H.ALL_TASKS, train_size=50, seed=seed)
        labels = [f"{c.client_id} {short[H.ALL_TASKS[g]]} {specs[c.client_id].label}"
                  for c, g in zip(clients, groups)]  # fmt: skip
        assert len(clients) == 24 and sum("high" in t for t in labels) == 6
        groups = np.array(groups)
        for c in (c for c, g in zip(clients, groups) if g == high):
            assert set(c.train.y.tolist()) <= {0, 1}  # answered through outputs 0 and 1

        similarity = H.relevance(H.client_task_vectors(clients, seed=seed)).numpy()
        high_high = mean_between(similarity, groups, high, high)
        parity_high = mean_between(similarity, groups, parity, high)
        digit_high = mean_between(similarity, groups, H.ALL_TASKS.index("digit"), high)
        # No: parity and high use the same two outputs, so their task vectors look alike.
        # Seeds 0-4, mean similarity high-high 0.90 0.85 0.91 0.89 0.85, parity-high 0.87
        # 0.87 0.89 0.88 0.83, digit-high 0.17 0.17 0.24 0.20 0.17.
        assert abs(high_high - parity_high) < 0.05
        assert parity_high > digit_high + 0.5
        # Clustered into four groups, all twelve parity and high clients share one cluster
        # on every seed 0-4.
        clusters = H.task_groups(torch.as_tensor(similarity), 4)
        assert len(set(clusters[(groups == parity) | (groups == high)].tolist())) == 1


def test_exercise_3_top_peers_at_a_low_temperature():
    """With `T = 0.05`, which peers does each client listen to? After a run,
    `sim.strategy.weights` holds the weights (rows in the order of `sim.strategy.client_ids`);
    per-client accuracy is in `sim.history.df` (`split == "personal"`). Do clients whose top
    peer has the same model size do better?"""
    clients, specs, groups = H.task_clients(DATA, train_size=50, seed=0)
    sim = Simulation(clients, *H.mosaic(specs, temperature=0.05), seed=0, progress=False,
                     eval_every=ROUNDS)  # fmt: skip
    history = sim.run(ROUNDS)
    weights, ids = sim.strategy.weights, sim.strategy.client_ids
    assert ids == list(range(18))
    assert (weights.diagonal() == 0).all()
    torch.testing.assert_close(weights.sum(1), torch.ones(18, dtype=weights.dtype))

    personal = history.df.query("split == 'personal' and metric == 'accuracy'")
    accuracy = personal[personal["round"] == ROUNDS].set_index("client")["value"]
    top = [ids[j] for j in weights.argmax(1).tolist()]
    peers = pd.DataFrame({
        "client": ids,
        "top peer": top,
        "same task": [groups[i] == groups[j] for i, j in zip(ids, top)],
        "same size": [specs[i].label == specs[j].label for i, j in zip(ids, top)],
        "accuracy": [accuracy[i] for i in ids],
    })  # fmt: skip
    assert len(peers) == 18
    # Each client listens to its own task: the top peer shares the task for 100% 100% 94%
    # 89% 94% of the clients (seeds 0-4).
    assert peers["same task"].mean() >= 0.8
    # The task vectors come from one frozen anchor model, blind to the client's size: the top
    # peer has the same size for 28% 28% 22% 28% 11% of the clients (seeds 0-4), about the
    # one-in-five chance of the five others in a task group.
    assert peers["same size"].mean() <= 8 / 18
    # Whether those clients do better is noise here: mean accuracy with a same-size top peer
    # 0.649 0.512 0.645 0.587 0.390 against 0.373 0.528 0.458 0.519 0.450 otherwise (seeds
    # 0-4), ahead on 3 of 5 seeds.
    by_size = peers.groupby("same size")["accuracy"].mean()
    assert set(by_size.index) == {True, False}


# the anchor: the smallest size, whose codes every other size is fitted to
ANCHOR = H.SIZES["small"]
PUBLIC = fm.pretrained.image_features(fm.data.public_digits().modalities["image"])  # (1797, 64)


@cache
def block_activations(spec):
    """Each Co-LoRA block's input and output in the pretrained model of ``spec`` on the
    public digits, centred. A fresh model has P = Q = 0, so it is the pretrained MLP."""
    net = spec.build().eval()
    x, out = PUBLIC, []
    with torch.no_grad():
        for i, layer in enumerate(net.layers):
            y = layer.base(x)
            if i in spec.blocks:
                out.append((x - x.mean(0), y - y.mean(0)))
            x = torch.relu(y)
    return out


def least_squares(spec):
    """Another alignment: keep the anchor's frames where every size reads or writes the same
    space (the tower's features in, the logits out); elsewhere fit ``A`` (the head block's
    input) and ``B`` (the first block's output) by least squares, so that the size's codes
    on the public digits match the anchor's. ``A`` and ``B`` are then not orthonormal."""
    anchor_frames = H.align_frames(ANCHOR)
    if spec == ANCHOR:
        return anchor_frames
    (_, y_ref), (x_ref, _) = block_activations(ANCHOR)
    (_, y_own), (x_own, _) = block_activations(spec)
    first, head = anchor_frames
    # the minimum-norm solutions (pinv): a unit that is dead on every public digit gives a
    # zero column, and the plain least-squares problem has no unique answer
    b = torch.linalg.pinv(y_own) @ (y_ref @ first["b"])  # (width, r)
    a = (torch.linalg.pinv(x_own) @ (x_ref @ head["a"].T)).T  # (r, width)
    return [{"a": first["a"], "b": b}, {"a": a, "b": head["b"]}]


def test_exercise_4_another_alignment():
    """Try another alignment: write a function `align(spec)` returning the same list of dicts
    as `H.align_frames(spec)` (for example, ... a least-squares `A`) and rerun
    `H.pq_transfer(data, task, align=align)`. How much transfer can a better alignment buy?"""
    model = H.SIZES["medium"].build(least_squares)
    blocks = [m for m in model.layers if isinstance(m, H.CoLoRALinear)]
    torch.testing.assert_close(blocks[1].a, least_squares(H.SIZES["medium"])[1]["a"])

    settings = {"n_train": 200, "steps": 60, "seed": 0}
    rotation = H.pq_transfer(DATA, "parity", **settings)
    fitted = H.pq_transfer(DATA, "parity", align=least_squares, **settings)
    # Adapters that were never trained do not read the frames; the anchor keeps its own
    # frames, so its own P/Q, trained on the same batches, score exactly the same.
    assert fitted.loc["no P/Q"].equals(rotation.loc["no P/Q"])
    assert fitted.loc["32x2", "32x2"] == rotation.loc["32x2", "32x2"]

    def moved(table):  # mean accuracy of P/Q run in another size than they were trained in
        values = table.values[1:]
        return values[~np.eye(3, dtype=bool)].mean()

    # About 20 points here: least squares carries P/Q between sizes much better than
    # rotation and gain. Mean off-diagonal accuracy on parity (200 samples, 60 steps), seeds
    # 0-4: rotation 0.419 0.402 0.447 0.422 0.441, least squares 0.603 0.626 0.619 0.657
    # 0.622 (no adapter: 0.16-0.19).
    assert moved(fitted) > moved(rotation) + 0.1
    # The price: a non-orthonormal A and B train less well in their own size. The large
    # model's own P/Q, seeds 0-4: 0.797 0.817 0.831 0.813 0.816 with rotation, 0.769 0.771
    # 0.784 0.783 0.796 with least squares (the medium one: 0.75-0.80 against 0.68-0.73).
    assert fitted.loc["128x4", "128x4"] < rotation.loc["128x4", "128x4"]
