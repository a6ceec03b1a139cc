"""Tested solutions of the exercises of notebook 07 (federated broadcasting), at small scale.

The notebook's setting, shrunk: 600 digits through the frozen stem, 20% held by the server,
5 Dirichlet clients instead of 10, 2 rounds, the notebook's `BroadcastSpec()`.
"""

from functools import cache

import torch
import torch.nn.functional as F

import fedlab_mm as fm
from fedlab_mm import broadcast as B
from fedlab_mm.federated import Simulation, evaluate

N_SAMPLES = 600
NUM_CLIENTS = 5
ROUNDS = 2

DATA = fm.mini_clip.stem_features(fm.data.digits(N_SAMPLES, modalities=("image",), progress=False))
REST, TEST = fm.partition.holdout(DATA, 0.2, seed=0)
SPEC = fm.mini_clip.BroadcastSpec()
CLASSES = list(SPEC.classes)
OFF_DIAGONAL = ~torch.eye(10, dtype=torch.bool)


def clients(alpha):
    split = fm.partition.dirichlet(REST, NUM_CLIENTS, alpha=alpha, seed=0)
    return split.clients(REST, seed=0)


@cache
def run(alpha, **options):
    """One FedAlign federation on the notebook's clients (seed 0), for ROUNDS rounds."""
    sim = Simulation(clients(alpha), *B.fedalign(SPEC, **options), seed=0, global_test=TEST,
                     progress=False)  # fmt: skip
    sim.run(ROUNDS)
    return sim


def served(sim):
    """The notebook's "served models, own test": the mean over clients of the model the
    server holds for each client, scored on that client's test data."""
    return sim.history.final("accuracy", "global")


def test_exercise_1_ex_query():
    """Set `ex_query=True` in `B.fedalign`. Under Dirichlet 0.1, what happens to the served
    models, and why (look at the diagonal of the query weights)?"""
    plain, ex_query = run(0.1), run(0.1, ex_query=True)
    w, w_ex = plain.strategy.weights, ex_query.strategy.weights
    ones = torch.ones(NUM_CLIENTS, dtype=w.dtype)
    torch.testing.assert_close(w.sum(1), ones)
    torch.testing.assert_close(w_ex.sum(1), ones)
    # Why: s_kk = 1 is the largest score there is, so a client always weighs itself most;
    # ex_query takes that weight away, and the client gets only the others' high adapters.
    assert torch.equal(w.diagonal(), w.max(1).values)
    assert (w.diagonal() > 0.5).all()  # 0.69-1.00 here: under strong skew mostly itself
    assert (w_ex.diagonal() == 0).all()
    # What happens: the served models lose on the clients' own test data. Seeds 0-4
    # (partition and run): 0.780 0.748 0.786 0.860 0.765 with the client in its own mix,
    # 0.666 0.644 0.661 0.635 0.704 without it.
    assert served(ex_query) < served(plain) - 0.04


def test_exercise_2_high_layers_all_or_none():
    """Make every layer personal (`high_layers=2`) or none (`high_layers=0`). Which scores
    best on the clients' own data, and which on the server's test set?"""
    sims = {n: run(0.5, high_layers=n) for n in (0, 2)}
    sims[1] = run(0.5)  # the default: the projection personal, encoder.0 averaged
    assert sims[2].strategy.low == [] and sims[0].strategy.high == []
    # With no personal layer every client is served the one global model...
    none = sims[0]
    for c in none.clients:
        state = none.served_model(c.client_id).state_dict()
        assert all(torch.equal(state[k], none.global_state[k]) for k in none.strategy.low)
    mean_own = sum(evaluate(none.served_model(c.client_id), c.data.test)["accuracy"]
                   for c in none.clients) / NUM_CLIENTS  # fmt: skip
    assert abs(served(none) - mean_own) < 1e-9
    # ...with every layer personal, each client its own mix of everything.
    every = sims[2]
    first, second = (every.served_model(c.client_id).state_dict() for c in every.clients[:2])
    assert not all(torch.equal(first[k], second[k]) for k in every.strategy.high)

    # Own data: a personal projection beats none. Seeds 0-4 (Dirichlet 0.5, 5 clients) on
    # CPU A: high_layers=0: 0.689 0.743 0.680 0.612 0.684; 1: 0.733 0.828 0.716 0.649 0.752;
    # 2: 0.687 0.830 0.743 0.605 0.708 (1 against 2 goes either way at this scale). On CPU B:
    # 0: 0.673 0.738 0.683 0.640 0.673; 1: 0.750 0.779 0.750 0.659 0.750; 2: 0.784 0.833 0.752
    # 0.659 0.725.
    assert served(sims[1]) > served(sims[0]) + 0.02
    # The server's test set (the one global model): averaging everything all along is at
    # least as good as the default on most seeds. Seeds 0-4 on the CPU of issues 21-23
    # (tests/known.py, "A"): high_layers=0: 0.678 0.636 0.686 0.678 0.661; 1: 0.579 0.636
    # 0.645 0.620 0.645; 2: 0.612 0.678 0.628 0.612 0.628. On CPU "B": 0: 0.636 0.686 0.686
    # 0.645 0.686; 1: 0.595 0.702 0.653 0.603 0.645; 2: 0.669 0.678 0.620 0.612 0.620 (seed 1:
    # the default wins by 0.016, so "every seed" does not hold on B).
    server = {n: s.history.final("accuracy", "server_test") for n, s in sims.items()}
    assert server[0] > server[1] + 0.02  # seed 0's margin: 0.099 on A, 0.041 on B


def test_exercise_3_one_short_prompt():
    """Build anchors from one short prompt instead of the five templates,
    `fm.mini_clip.TextAnchors(classes, templates=["a picture of {w}"]).anchors()`. Are they closer
    together or further apart than the anchors above (compare the off-diagonal cosines)? What do
    the five templates share that every class's anchor inherits? Then load them into a fresh
    model: does the pretrained encoder's zero-shot accuracy change much?"""
    anchors = fm.mini_clip.class_anchors(CLASSES)
    short = fm.mini_clip.TextAnchors(CLASSES, templates=["a picture of {w}"]).anchors()
    assert short.shape == (10, 384)
    torch.testing.assert_close(short.norm(dim=1), torch.ones(10))
    cosines, short_cosines = anchors @ anchors.T, short @ short.T
    torch.testing.assert_close(short_cosines, short_cosines.T)
    # Further apart, not closer (MiniLM is fixed, so these are known values): off-diagonal
    # cosines 0.58-0.86, mean 0.729, for the five templates; 0.43-0.83, mean 0.638, for the
    # single short one. The five templates share "handwritten digit", "number", "scan":
    # averaging them adds that common part to every class's anchor, which pulls the anchors
    # together. (One of them alone, "a handwritten digit {w}", gives a mean of 0.818.)
    assert 0.70 < cosines[OFF_DIAGONAL].mean() < 0.76
    assert 0.60 < short_cosines[OFF_DIAGONAL].mean() < 0.67
    assert short_cosines[OFF_DIAGONAL].min() < cosines[OFF_DIAGONAL].min() - 0.1
    handwritten = fm.mini_clip.TextAnchors(CLASSES, templates=["a handwritten digit {w}"]).anchors()
    assert (handwritten @ handwritten.T)[OFF_DIAGONAL].mean() > cosines[OFF_DIAGONAL].mean()

    # Why the spacing matters: an image feature sitting exactly on its class anchor has
    # logits cos / tau; the closer the other anchors, the smaller its margin and the larger
    # its cross-entropy (0.079 with the five templates, 0.038 with the short one).
    labels = torch.arange(10)
    loss = F.cross_entropy(cosines / SPEC.tau, labels)
    short_loss = F.cross_entropy(short_cosines / SPEC.tau, labels)
    assert short_loss < 0.6 * loss
    # But the pretrained encoder hardly notices: its projection was fitted to the
    # five-template anchors, and the short ones sit at cosine 0.67-0.85 from them, yet the
    # nearest anchor stays the same for almost every image. Zero-shot accuracy on the
    # server's 121 test images: 0.479 with the five templates, 0.471 with the short prompt
    # (0.505 and 0.499 on the notebook's 1,000).
    assert (short * anchors).sum(1).max() < 0.9
    model = SPEC.build()
    before = evaluate(model, TEST)["accuracy"]
    model.load_state_dict({"anchors": short}, strict=False)
    torch.testing.assert_close(model.state_dict()["anchors"], short)
    assert abs(evaluate(model, TEST)["accuracy"] - before) < 0.03


def test_exercise_4_without_orthogonality():
    """Train with `B.fedalign(orth=0.0)`. The anchors are not orthogonal, so features sitting
    exactly on them would not be either: does the orthogonality term pull against the
    cross-entropy, and does it change accuracy?"""
    anchors = fm.mini_clip.class_anchors(CLASSES)
    labels = torch.arange(10)
    # Features exactly on the anchors: the term is the mean squared cosine between different
    # anchors, 0.536, far from its minimum 0.
    on_anchors = fm.losses.orthogonality(anchors, labels)
    torch.testing.assert_close(on_anchors, (anchors @ anchors.T)[OFF_DIAGONAL].pow(2).mean())
    assert on_anchors > 0.5
    # But there the two terms push the same way: both move each feature away from the other
    # classes' anchors (cosine between their gradients 0.84-0.98 for the ten classes).
    features = anchors.clone().requires_grad_(True)
    ce = F.cross_entropy(F.normalize(features, dim=1) @ anchors.T / SPEC.tau, labels)
    (grad_ce,) = torch.autograd.grad(ce, features)
    (grad_orth,) = torch.autograd.grad(fm.losses.orthogonality(features, labels), features)
    assert (F.cosine_similarity(grad_ce, grad_orth, dim=1) > 0.8).all()

    def trained_orthogonality(sim):
        with torch.no_grad():
            return sum(float(fm.losses.orthogonality(
                           c.model.features(c.data.train.modalities)["joint"], c.data.train.y))
                       for c in sim.clients) / NUM_CLIENTS  # fmt: skip

    with_orth, without = run(0.5), run(0.5, orth=0.0)
    # The term does its job on the trained features, by a little: seeds 0-4, mean over
    # clients, on CPU A orth=0.1: 0.288 0.244 0.176 0.226 0.283, orth=0.0: 0.305 0.252 0.189
    # 0.226 0.301; on CPU B orth=0.1: 0.268 0.272 0.190 0.221 0.273, orth=0.0: 0.271 0.278
    # 0.204 0.232 0.300. Without the term it is higher on 9 of the 10 runs, tied on one;
    # seed 0's margin is 0.017 on A and 0.003 on B.
    assert trained_orthogonality(without) > trained_orthogonality(with_orth) + 0.001
    # Accuracy hardly moves at this scale: served models 0.733 0.828 0.716 0.649 0.752 with
    # the term, 0.740 0.818 0.710 0.649 0.752 without (seeds 0-4, CPU A); 0.750 0.779 0.750
    # 0.659 0.750 with, 0.750 0.779 0.777 0.659 0.757 without (CPU B).
    assert abs(served(without) - served(with_orth)) < 0.02
