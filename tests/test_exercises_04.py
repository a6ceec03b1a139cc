"""Tested solutions of the exercises of notebook 04 (aligned and context features), at smoke
scale.

The notebook's smoke-mode data (600 synthetic samples, Dirichlet 0.1, 10% labels) over 5
clients instead of 10 and for 3 rounds, so that the nine FedEPA runs fit the file's time
budget. The numbers in the comments are from seeds 0-4 (data, partition and run).
"""

import functools
import itertools

import pandas as pd
import torch

import fedlab_mm as fm
from fedlab_mm.decomposition import Alignment, fedepa, info_nce
from fedlab_mm.federated import Batch, Simulation

N_SAMPLES = 600
ROUNDS = 3
NUM_CLIENTS, LABELED = 5, 0.1
DIMS = dict(k=16, d=32, hidden=64)  # the notebook's part width k and encoder widths

DS = fm.data.synthetic(n_samples=N_SAMPLES, seed=0)
REST, SERVER_TEST = fm.partition.holdout(DS, 0.2, seed=0)
PART = fm.partition.dirichlet(REST, NUM_CLIENTS, alpha=0.1, seed=0)
PART = fm.partition.scarce_labels(PART, LABELED, seed=0)
CLIENTS = PART.clients(REST, seed=0)
# Exercise 3's clients: the same partition, one modality gone from half of each client's samples.
MISSING = fm.partition.missing_modalities(PART, DS, 0.5, seed=0)
MISSING_CLIENTS = MISSING.clients(REST, seed=0)


@functools.cache
def track(missing=False, **fedepa_kwargs):
    """The notebook's `track`: train FedEPA and measure, after every round, how much of each
    true latent the global model's parts carry. Also returns the label-scarce accuracy (each
    client's model after the round's init rule, on its own test split) and the global model.
    Cached, because the exercises share runs."""
    clients = MISSING_CLIENTS if missing else CLIENTS
    recipe = fedepa(REST, **DIMS, **fedepa_kwargs)
    sim = Simulation(
        clients, *recipe, seed=0, global_test=SERVER_TEST, progress=False, eval_every=ROUNDS
    )
    net, rows = fm.models.build_model(recipe.spec), []
    for rnd in range(1, ROUNDS + 1):
        sim.run(1)
        net.load_state_dict(sim.global_state)
        rows.append({"round": rnd, **fm.decomposition.recovery(net, SERVER_TEST).mean()})
    return pd.DataFrame(rows), sim.history.final(split="personal_init"), net


def alignment_loss(net):
    """Symmetric InfoNCE (at the recipe's tau 0.1) between the aligned parts of every two
    modalities on the server's test set, averaged over the pairs: lower is better aligned."""
    net.eval()
    with torch.no_grad():
        aligned = net.features(SERVER_TEST.modalities, SERVER_TEST.present)["aligned"]
    pairs = list(itertools.combinations(aligned.values(), 2))
    return sum(float(info_nce(a, b, tau=0.1)) for a, b in pairs) / len(pairs)


def final(curves, column):
    """A recovery curve's value after the last round."""
    return float(curves[column].iloc[-1])


def test_exercise_1_temperature():
    """Lower the temperature to `tau=0.05` and raise it to `0.5` (`fedepa(..., tau=...)`).
    What happens to the recovery curves?"""
    curves = {0.05: track(tau=0.05)[0], 0.1: track()[0], 0.5: track(tau=0.5)[0]}
    for table in curves.values():
        assert list(table["round"]) == list(range(1, ROUNDS + 1))

    # The lower the temperature, the more of the shared latent z_aligned picks up. Final
    # aligned~shared at tau = 0.05, 0.1, 0.5, seeds 0-4: 0.568 0.546 0.524 | 0.615 0.590 0.555
    # | 0.616 0.605 0.555 | 0.659 0.649 0.627 | 0.593 0.584 0.571.
    shared = {tau: final(table, "aligned~shared") for tau, table in curves.items()}
    assert shared[0.05] > shared[0.1] > shared[0.5]
    assert shared[0.05] > shared[0.5] + 0.015
    # The context part hardly moves with tau at this scale (context~private 0.117-0.176, the
    # three temperatures within 0.013 of each other on every seed), and the label-scarce
    # accuracy differs by at most 0.04 without a stable order.
    private = [final(table, "context~private") for table in curves.values()]
    assert max(private) - min(private) < 0.03


def test_exercise_2_alignment_weight():
    """Find the alignment weight between 0.1 and 1 where the label-scarce accuracy starts to
    fall. Does alignment alone (`indep=0, div=0`) at a higher weight do better than all three
    terms?"""
    runs = {0.1: track(), 0.3: track(align=0.3), 1.0: track(align=1.0)}
    accuracy = {weight: run[1] for weight, run in runs.items()}
    loss = {weight: alignment_loss(run[2]) for weight, run in runs.items()}

    # A higher weight aligns the modalities better (test-set InfoNCE at weights 0.1, 0.3, 1,
    # seeds 0-4: 4.64 3.81 2.84 | 3.74 2.59 1.71 | 4.45 3.64 2.59 | 4.27 3.59 2.60 |
    # 4.32 3.53 2.53) ...
    assert loss[0.1] > loss[0.3] > loss[1.0]
    # ... but between 0.3 and 1 the label-scarce accuracy falls: at weights 0.1, 0.3, 1 it was
    # 0.430 0.430 0.392 | 0.518 0.508 0.451 | 0.441 0.435 0.367 | 0.520 0.525 0.432 |
    # 0.479 0.453 0.283 (0.1 against 0.3 has no stable order).
    assert accuracy[1.0] < min(accuracy[0.1], accuracy[0.3]) - 0.02

    alone = track(align=1.0, indep=0, div=0)
    together = track(align=1.0, indep=1.0, div=1.0)
    # Alignment alone or all three terms, at weight 1: which has the better accuracy is not
    # stable at this scale (alone against together, seeds 0-4: 0.285 / 0.399, 0.403 / 0.319,
    # 0.300 / 0.322, 0.420 / 0.483, 0.283 / 0.302). What is stable is what the other two terms
    # do: alone aligns a little better (test InfoNCE 2.84 / 3.06, 1.74 / 1.83, 2.59 / 2.99,
    # 2.61 / 2.90, 2.56 / 2.75) but leaves the shared latent in z_context, which independence
    # pushes out (context~shared 0.613 / 0.418, 0.679 / 0.428, 0.723 / 0.605, 0.675 / 0.418,
    # 0.611 / 0.401).
    assert alignment_loss(alone[2]) < alignment_loss(together[2])
    context_shared = final(alone[0], "context~shared") - final(together[0], "context~shared")
    assert context_shared > 0.08


def test_exercise_3_missing_modalities():
    """Give the clients missing modalities: `fm.partition.missing_modalities(part, ds, 0.5,
    seed=0)` takes one of the three modalities away from half of each client's samples. Does
    alignment still help when fewer samples have pairs?"""
    # Half of each client's samples lose exactly one modality; no sample loses two.
    for mask, indices in zip(MISSING.present, MISSING.indices):
        lost = (~mask).sum(1)
        assert lost.max() == 1
        assert (lost == 1).sum() == round(0.5 * len(indices))
    # So each pair of modalities is left on about 2/3 of the samples (1 - 0.5 * 2/3).
    present = torch.cat([c.train.present for c in MISSING_CLIENTS])
    for i, j in itertools.combinations(range(DS.M), 2):
        both = (present[:, i] & present[:, j]).float().mean()
        assert abs(float(both) - 2 / 3) < 0.06

    on, accuracy_on, net = track(missing=True)
    off, accuracy_off, net_off = track(missing=True, align=0)

    # Alignment learns only from the samples that have both modalities of a pair: on a
    # client's training batch it is InfoNCE on those rows, averaged over the pairs.
    data = MISSING_CLIENTS[0].train
    with torch.no_grad():
        features = net.features(data.modalities, data.present)
    batch = Batch(
        model=net,
        modalities=data.modalities,
        present=data.present.float(),
        y=data.y,
        labeled=data.labeled,
        logits=features["logits"],
        received={},
        client_state={},
        features=features,
    )
    by_hand = []
    for (i, m), (j, n) in itertools.combinations(enumerate(data.names), 2):
        both = data.present[:, i] & data.present[:, j]
        by_hand.append(info_nce(features["aligned"][m][both], features["aligned"][n][both]))
    torch.testing.assert_close(Alignment().compute(batch), torch.stack(by_hand).mean())

    # It still helps the split: with alignment z_aligned holds more of the shared latent
    # (aligned~shared on / off, seeds 0-4: 0.546 / 0.522, 0.580 / 0.497, 0.605 / 0.556,
    # 0.644 / 0.605, 0.571 / 0.558; without missing modalities the gaps were 0.024, 0.047,
    # 0.059, 0.040, 0.023) and the modalities are better aligned.
    assert final(on, "aligned~shared") > final(off, "aligned~shared") + 0.01
    assert alignment_loss(net) < alignment_loss(net_off) - 0.5
    # Not for accuracy at this scale: with alignment it was equal or a little lower (on / off:
    # 0.424 / 0.439, 0.480 / 0.486, 0.435 / 0.448, 0.533 / 0.533, 0.425 / 0.436), within noise.
    assert abs(accuracy_on - accuracy_off) < 0.05
