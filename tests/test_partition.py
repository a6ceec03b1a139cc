import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fedlab_mm as fm
from fedlab_mm import partition as P
from fedlab_mm.partition import skew

Y = np.arange(5000) % 10  # balanced labels, 10 classes


def _assert_disjoint_covering(part, n, expected=None):
    everything = np.concatenate(part.indices)
    assert len(everything) == len(np.unique(everything)), "clients overlap"
    expected = np.arange(n) if expected is None else expected
    assert np.array_equal(np.sort(everything), expected), "some samples are unassigned"


SCHEMES = {
    "iid": lambda y, n, s: P.iid(y, n, seed=s),
    "dirichlet": lambda y, n, s: P.dirichlet(y, n, alpha=0.3, min_size=2, seed=s),
    "shards": lambda y, n, s: P.shards(y, n, shards_per_client=2, seed=s),
    "pathological": lambda y, n, s: P.pathological(y, n, classes_per_client=2, seed=s),
    "quantity_skew": lambda y, n, s: P.quantity_skew(y, n, sigma=1.5, min_size=2, seed=s),
}


@settings(max_examples=30, deadline=None)
@given(
    scheme=st.sampled_from(sorted(SCHEMES)),
    n=st.integers(60, 600),
    num_classes=st.integers(2, 10),
    num_clients=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_every_scheme_is_disjoint_covering_and_seeded(scheme, n, num_classes, num_clients, seed):
    y = np.random.default_rng(seed).integers(0, num_classes, size=n)
    y[:num_classes] = np.arange(num_classes)  # every class present
    part = SCHEMES[scheme](y, num_clients, seed)
    assert part.num_clients == num_clients
    expected = None
    if scheme == "pathological":  # with N * k < C some classes go unused, all of each used one
        used = np.unique(y[np.concatenate(part.indices)])
        expected = np.flatnonzero(np.isin(y, used))
        assert len(used) == min(num_classes, 2 * num_clients)
    _assert_disjoint_covering(part, n, expected)
    again = SCHEMES[scheme](y, num_clients, seed)
    assert all(np.array_equal(a, b) for a, b in zip(part.indices, again.indices))
    assert all(idx.dtype == np.int64 for idx in part.indices)


@settings(max_examples=30, deadline=None)
@given(
    alpha=st.floats(1e-3, 1e3),
    num_clients=st.integers(2, 40),
    min_size=st.integers(0, 20),
    seed=st.integers(0, 1000),
)
def test_dirichlet_respects_min_size(alpha, num_clients, min_size, seed):
    part = P.dirichlet(Y[:1000], num_clients, alpha=alpha, min_size=min_size, seed=seed)
    assert part.sizes.min() >= min_size
    _assert_disjoint_covering(part, 1000)


def test_tiny_alpha_with_100_clients_terminates_fast():
    start = time.perf_counter()
    part = P.dirichlet(Y, 100, alpha=1e-3, min_size=10, seed=0)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0
    assert part.sizes.min() >= 10
    _assert_disjoint_covering(part, len(Y))


def test_alpha_large_approaches_iid_and_small_approaches_one_class():
    # Measured over seeds 0-4 on 5000 balanced samples: JS distance 0.048-0.054 at alpha=1000
    # with 10 clients (IID sampling noise alone gives about 0.05); effective number of classes
    # 1.00-1.13 at alpha=1e-3 with 50 clients. (With 10 clients and 10 classes, collisions make
    # it 1.4-2.1: some client must hold two classes when another would hold none.)
    for seed in range(3):
        wide = skew.summary(P.dirichlet(Y, 10, alpha=1000.0, seed=seed), Y)
        iid = skew.summary(P.iid(Y, 10, seed=seed), Y)
        assert wide["js_distance"] < 0.08 and iid["js_distance"] < 0.08
        narrow = skew.summary(P.dirichlet(Y, 50, alpha=1e-3, seed=seed), Y)
        assert narrow["effective_classes"] < 1.3


def test_js_distance_falls_as_alpha_grows():
    # strictly falling on seeds 0-4 (e.g. seed 0: 0.81, 0.69, 0.36, 0.13, 0.08)
    js = [
        skew.summary(P.dirichlet(Y, 20, alpha=a, seed=0), Y)["js_distance"]
        for a in (0.01, 0.1, 1.0, 10.0, 100.0)
    ]
    assert all(a > b for a, b in zip(js, js[1:]))


def test_per_client_alpha_makes_some_clients_more_skewed():
    # measured gap in mean JS distance, seeds 0-4: 0.81-0.83
    alphas = [0.01] * 5 + [100.0] * 5
    table = skew.report(P.dirichlet(Y, 10, alpha=alphas, seed=0), Y)
    assert table["js_distance"][:5].mean() > table["js_distance"][5:].mean() + 0.3


def test_shards_and_pathological_limit_classes_per_client():
    assert (P.shards(Y, 10, shards_per_client=2).label_counts(Y) > 0).sum(1).max() <= 2
    counts = P.pathological(Y, 10, classes_per_client=3).label_counts(Y)
    assert ((counts > 0).sum(1) == 3).all()
    assert (counts.sum(0) > 0).all()  # every class used


def test_quantity_skew_sizes():
    equal = P.quantity_skew(Y, 10, sigma=0.0, min_size=10)
    assert equal.sizes.max() - equal.sizes.min() <= 1
    # Gini at sigma=2 measured over seeds 0-4: 0.61 / 0.38 / 0.74 / 0.87 / 0.76 (10 clients)
    uneven = P.quantity_skew(Y, 10, sigma=2.0, min_size=10)
    assert skew.gini(uneven.sizes) > 0.3 and uneven.sizes.min() >= 10
    power = P.quantity_skew(Y, 10, sigma=1.0, kind="power", min_size=10)
    assert power.sizes.sum() == len(Y)


def test_clients_have_stratified_disjoint_splits():
    ds = fm.data.synthetic(n_samples=1000, seed=0)
    part = P.dirichlet(ds, 5, alpha=0.5, seed=0)
    clients = part.clients(ds, test_fraction=0.25, seed=0)
    assert [c.client_id for c in clients] == list(range(5))
    for client, idx in zip(clients, part.indices):
        assert len(client.train) + len(client.test) == len(idx)
        assert len(client.train) > 0
        train_counts = np.bincount(client.train.y, minlength=10)
        test_counts = np.bincount(client.test.y, minlength=10)
        total = train_counts + test_counts
        big = total >= 8
        np.testing.assert_allclose(test_counts[big] / total[big], 0.25, atol=0.08)
        # the split is of the client's own samples: shared latents match the dataset rows
        rows = torch.cat([client.train.latents["shared"], client.test.latents["shared"]])
        assert torch.equal(rows.sort(0).values, ds.latents["shared"][idx].sort(0).values)


def test_clients_validation():
    ds = fm.data.synthetic(n_samples=100, seed=0)
    part = P.iid(ds, 2)
    with pytest.raises(ValueError, match="test_fraction"):
        part.clients(ds, test_fraction=1.0)
    with pytest.raises(ValueError, match="made for 100"):
        part.clients(fm.data.synthetic(n_samples=50, seed=0))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: P.dirichlet(Y, 10, alpha=0.0), "alpha"),
        (lambda: P.dirichlet(Y, 10, alpha=-1.0), "alpha"),
        (lambda: P.dirichlet(Y, 10, alpha=[1.0, 2.0]), "alpha"),
        (lambda: P.dirichlet(Y, 10, alpha="0.5"), "not text"),
        (lambda: P.dirichlet(Y, 10, min_size=600), "exceeds"),
        (lambda: P.dirichlet(Y, 10, min_size=-1), "min_size"),
        (lambda: P.iid(Y[:5], 6), "exceeds"),
        (lambda: P.iid(Y, 0), "num_clients"),
        (lambda: P.iid(Y, 2.5), "num_clients"),
        (lambda: P.pathological(Y, 5, classes_per_client=11), "classes_per_client"),
        (lambda: P.pathological(Y, 5, classes_per_client=0), "classes_per_client"),
        (lambda: P.shards(Y, 5, shards_per_client=0), "shards_per_client"),
        (lambda: P.quantity_skew(Y, 5, sigma=-1), "sigma"),
        (lambda: P.quantity_skew(Y, 5, kind="zipf"), "kind"),
        (lambda: P.iid(np.array([0.5, 1.5]), 1), "integer labels"),
    ],
)
def test_bad_arguments_say_what_to_change(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_pathological_refuses_empty_clients():
    y = np.array([0] * 3 + [1] * 50)
    with pytest.raises(ValueError, match="no samples"):
        P.pathological(y, 8, classes_per_client=1)


def test_repr_names_the_schemes():
    ds = fm.data.synthetic(n_samples=200, seed=0)
    part = P.scarce_labels(P.missing_modalities(P.iid(ds, 4), ds, rate=0.2), 0.5)
    assert "iid + missing_modalities + scarce_labels" in repr(part)
