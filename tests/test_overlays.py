import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fedlab_mm as fm
from fedlab_mm import partition as P

DS = fm.data.synthetic(n_samples=600, seed=0)


@settings(max_examples=40, deadline=None)
@given(
    rate=st.one_of(
        st.floats(0, 1),
        st.fixed_dictionaries(
            {"image": st.floats(0, 1), "audio": st.floats(0, 1), "text": st.floats(0, 1)}
        ),
    ),
    absent_audio=st.lists(st.integers(0, 5), max_size=3, unique=True),
    seed=st.integers(0, 1000),
)
def test_masks_never_leave_a_sample_without_modalities(rate, absent_audio, seed):
    part = P.dirichlet(DS, 6, alpha=0.5, min_size=5, seed=seed)
    if isinstance(rate, dict) and min(rate.values()) == 1.0:
        with pytest.raises(ValueError, match="removes every modality"):
            P.missing_modalities(part, DS, rate=rate, seed=seed)
        return
    part = P.missing_modalities(part, DS, rate=rate, absent={"audio": absent_audio}, seed=seed)
    for k, mask in enumerate(part.present):
        assert mask.shape == (len(part.indices[k]), 3)
        assert mask.any(1).all()
        if k in absent_audio:
            assert not mask[:, 1].any()


def test_numeric_rate_drops_exactly_one_modality_from_that_share():
    part = P.missing_modalities(P.iid(DS, 3), DS, rate=0.4, seed=0)
    for mask, idx in zip(part.present, part.indices):
        dropped = (~mask).sum(1)
        assert set(dropped.tolist()) <= {0, 1}
        assert dropped.sum() == round(0.4 * len(idx))


def test_fedmvp_split_of_the_missing_share():
    names = ["image", "text"]
    ds = fm.data.synthetic(n_samples=4000, dims={"image": 8, "text": 8}, seed=0)
    part = P.missing_modalities(P.iid(ds, 2), names, rate=0.8, split={"image": 0.25, "text": 0.75})
    mask = np.concatenate(part.present)
    image_missing, text_missing = (~mask[:, 0]).mean(), (~mask[:, 1]).mean()
    assert abs(image_missing + text_missing - 0.8) < 1e-9
    assert abs(image_missing - 0.2) < 0.03 and abs(text_missing - 0.6) < 0.03


def test_per_client_rates():
    part = P.missing_modalities(P.iid(DS, 3), DS, rate=[0.0, 0.5, 1.0], seed=0)
    missing = [(~m).any(1).mean() for m in part.present]
    assert missing[0] == 0.0 and abs(missing[1] - 0.5) < 0.01 and missing[2] == 1.0


def test_missing_data_is_zeroed_and_masked_in_client_datasets():
    part = P.missing_modalities(P.iid(DS, 2), DS, rate=0.5, seed=0)
    local = part.client_dataset(DS, 0)
    gone = ~local.present[:, 0]
    assert gone.any()
    assert (local.modalities["image"][gone] == 0).all()
    kept = local.present[:, 0]
    assert torch.equal(
        local.modalities["image"][kept], DS.modalities["image"][part.indices[0]][kept]
    )


@settings(max_examples=30, deadline=None)
@given(fraction=st.floats(0, 1), num_clients=st.integers(1, 8), seed=st.integers(0, 100))
def test_labeled_fraction_is_honoured_within_rounding(fraction, num_clients, seed):
    part = P.scarce_labels(P.iid(DS, num_clients, seed=seed), fraction, seed=seed)
    for mask, idx in zip(part.labeled, part.indices):
        expected = round(fraction * len(idx))
        if fraction > 0:
            expected = max(1, expected)
        assert mask.sum() == expected


def test_scarce_labels_reach_client_data():
    part = P.scarce_labels(P.iid(DS, 2), 0.1, seed=0)
    clients = part.clients(DS)
    share = np.mean([c.train.labeled.float().mean().item() for c in clients])
    assert 0.05 < share < 0.15
    zero = P.scarce_labels(P.iid(DS, 2), 0.0)
    assert not any(m.any() for m in zero.labeled)


def test_feature_skew_spreads_levels_over_clients():
    ds = fm.data.digits(n_samples=40, modalities=("image",), seed=0, progress=False)
    part = P.feature_skew(P.iid(ds, 3), "image", kind="rotate", strength=90.0)
    assert [t[0][2] for t in part.transforms] == [0.0, 45.0, 90.0]
    first, last = part.client_dataset(ds, 0), part.client_dataset(ds, 2)
    assert torch.equal(first.modalities["image"], ds.modalities["image"][part.indices[0]])
    original = ds.modalities["image"][part.indices[2]]
    rotated = last.modalities["image"]
    # a 90 degree turn moves ink: the rotated image matches torch.rot90 up to interpolation
    turned = torch.rot90(original, k=1, dims=(2, 3))
    assert (rotated - turned).abs().mean() < (rotated - original).abs().mean()


def test_feature_skew_noise_and_gain():
    part = P.feature_skew(P.iid(DS, 2), "audio", kind="noise", strength=2.0)
    noisy = part.client_dataset(DS, 1).modalities["audio"]
    clean = DS.modalities["audio"][part.indices[1]]
    assert abs((noisy - clean).std().item() - 2.0) < 0.1
    x = torch.full((2, 4, 4), 0.5)
    assert torch.allclose(P.apply_transform(x, "gain", 8.0, None), torch.full((2, 4, 4), 0.6))
    v = torch.ones(2, 3)
    assert torch.allclose(P.apply_transform(v, "gain", 20.0, None), torch.full((2, 3), 10.0))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda p: P.missing_modalities(p, DS, rate=1.5), "rate"),
        (lambda p: P.missing_modalities(p, DS, rate=-0.1), "rate"),
        (lambda p: P.missing_modalities(p, DS, rate={"video": 0.1}), "unknown"),
        (lambda p: P.missing_modalities(p, DS, rate=0.5, split={"image": 0.7}), "split"),
        (lambda p: P.missing_modalities(p, ["image"], rate=0.5), "two distinct"),
        (
            lambda p: P.missing_modalities(p, DS, absent={"image": [0], "audio": [0], "text": [0]}),
            "no modality",
        ),
        (lambda p: P.missing_modalities(p, DS, absent={"audio": [9]}), "client ids"),
        (lambda p: P.scarce_labels(p, 1.2), "fraction"),
        (lambda p: P.scarce_labels(p, [0.5]), "one per client"),
        (lambda p: P.feature_skew(p, "image", kind="blur"), "kind"),
        (lambda p: P.feature_skew(p, "image", kind="noise", strength=-1), "strength"),
    ],
)
def test_overlay_arguments_are_checked(call, match):
    with pytest.raises(ValueError, match=match):
        call(P.iid(DS, 3))


def test_feature_skew_on_an_unknown_modality_fails_clearly():
    part = P.feature_skew(P.iid(DS, 2), "video", kind="noise", strength=1.0)
    with pytest.raises(ValueError, match="'video'"):
        part.client_dataset(DS, 0)
    with pytest.raises(ValueError, match="rotate needs images"):
        P.feature_skew(P.iid(DS, 2), "audio", kind="rotate", strength=10).client_dataset(DS, 1)
