import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fedlab_mm as fm
from fedlab_mm.data import MultimodalDataset, speech


# ------------------------------------------------------------------ container
def test_defaults_for_masks_and_repr():
    ds = fm.data.synthetic(n_samples=50, seed=0)
    assert ds.present.shape == (50, 3) and ds.present.dtype == torch.bool and ds.present.all()
    assert ds.labeled.shape == (50,) and ds.labeled.all()
    text = repr(ds)
    assert "n=50" in text and "image: (64,)" in text and "missing" in text


def test_subset_keeps_everything_aligned():
    ds = fm.data.synthetic(n_samples=40, seed=1)
    ds = ds.replace(labeled=torch.arange(40) % 2 == 0)
    idx = [3, 17, 5]
    sub = ds.subset(idx)
    assert torch.equal(sub.y, ds.y[idx])
    assert torch.equal(sub.modalities["text"], ds.modalities["text"][idx])
    assert torch.equal(sub.latents["shared"], ds.latents["shared"][idx])
    assert sub.labeled.tolist() == [False, False, False]
    mask = torch.zeros(40, dtype=torch.bool)
    mask[[1, 2]] = True
    assert len(ds.subset(mask)) == 2
    assert torch.equal(ds.subset(slice(2, 8, 3)).y, ds.y[[2, 5]])
    with pytest.raises(IndexError):
        ds.subset([40])


def test_missing_rate_and_validation():
    x = {"a": torch.zeros(4, 2), "b": torch.zeros(4, 3)}
    present = torch.tensor([[1, 1], [1, 0], [1, 0], [0, 1]], dtype=torch.bool)
    ds = MultimodalDataset(x, torch.tensor([0, 1, 0, 1]), ["u", "v"], present=present)
    assert ds.missing_rate == {"a": 0.25, "b": 0.5}
    with pytest.raises(ValueError, match="first dim"):
        MultimodalDataset({"a": torch.zeros(3, 2)}, torch.tensor([0, 1, 0, 1]), ["u", "v"])
    with pytest.raises(ValueError, match="labels"):
        MultimodalDataset({"a": torch.zeros(2, 2)}, torch.tensor([0, 2]), ["u", "v"])
    with pytest.raises(ValueError, match="present"):
        MultimodalDataset(x, torch.tensor([0, 1, 0, 1]), ["u", "v"], present=torch.ones(4, 3))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 29), max_size=30))
def test_subset_property(idx):
    ds = fm.data.synthetic(n_samples=30, n_classes=3, seed=0)
    sub = ds.subset(idx)
    assert len(sub) == len(idx)
    for j, i in enumerate(idx):
        assert int(sub.y[j]) == int(ds.y[i])
        assert torch.equal(sub.modalities["image"][j], ds.modalities["image"][i])


# ------------------------------------------------------------------ synthetic
def test_synthetic_shapes_dtypes_and_latents():
    ds = fm.data.synthetic(
        n_samples=300, n_classes=4, dims={"a": 10, "b": 6}, shared_dim=5, private_dim=3, seed=0
    )
    assert ds.modalities["a"].shape == (300, 10) and ds.modalities["a"].dtype == torch.float32
    assert ds.modalities["b"].shape == (300, 6)
    assert ds.y.dtype == torch.int64 and set(ds.y.tolist()) == {0, 1, 2, 3}
    assert ds.latents["shared"].shape == (300, 5)
    assert ds.latents["private_a"].shape == (300, 3)


def test_synthetic_is_deterministic():
    a, b, c = (fm.data.synthetic(n_samples=200, seed=s) for s in (7, 7, 8))
    for m in a.names:
        assert torch.equal(a.modalities[m], b.modalities[m])
        assert not torch.equal(a.modalities[m], c.modalities[m])
    assert torch.equal(a.y, b.y)


def test_synthetic_is_fast():
    start = time.perf_counter()
    fm.data.synthetic(n_samples=5000, seed=0)
    assert time.perf_counter() - start < 0.5


def test_noise_makes_one_modality_weak():
    # Measured over seeds 0-4 (n=1500): clean modalities score 0.80-0.93 with the linear
    # probe, the modality with noise=5 scores 0.21-0.24 (chance = 0.10).
    for seed in range(3):
        ds = fm.data.synthetic(
            n_samples=1500, noise={"image": 0.1, "audio": 5.0, "text": 0.1}, seed=seed
        )
        acc = fm.viz.probe_accuracy(ds, seed=seed)
        assert acc["image"] > 0.7 and acc["text"] > 0.7
        assert acc["audio"] < 0.35


def test_class_sep_zero_is_chance():
    # measured over seeds 0-4: best modality 0.09-0.13 (chance = 0.10)
    ds = fm.data.synthetic(n_samples=1500, class_sep=0.0, seed=0)
    assert max(fm.viz.probe_accuracy(ds).values()) < 0.2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_samples": 0}, "n_samples"),
        ({"n_samples": -5}, "n_samples"),
        ({"n_classes": 1}, "n_classes"),
        ({"noise": -0.1}, "noise"),
        ({"noise": {"video": 0.1}}, "unknown modalities"),
        ({"noise": float("nan")}, "noise"),
        ({"dims": {}}, "dims"),
        ({"dims": {"a": 0}}, "dims"),
        ({"class_sep": -1.0}, "class_sep"),
    ],
)
def test_synthetic_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fm.data.synthetic(**kwargs)


# ------------------------------------------------------------------ digits
def test_digits_shapes_and_pairing(tmp_cache):
    ds = fm.data.digits(n_samples=60, seed=0, progress=False)
    assert ds.names == ["image", "audio", "text"]
    assert ds.modalities["image"].shape == (60, 1, 28, 28)
    assert ds.modalities["audio"].shape == (60, 32, 32)
    assert ds.modalities["text"].shape == (60, 384)
    for x in ds.modalities.values():
        assert x.dtype == torch.float32 and torch.isfinite(x).all()
    assert 0 <= ds.modalities["image"].min() and ds.modalities["image"].max() <= 1
    # every view shares the label: the caption of a non-vague sample names the digit
    for label, text in zip(ds.y.tolist(), ds.meta["caption"]):
        if text not in fm.data.captions.VAGUE_TEMPLATES:
            words = text.replace(",", " ").split()
            assert ds.classes[label] in words or str(label) in words
    # the text vector is the encoder's embedding of that caption
    z = fm.data.captions.embed(list(ds.meta["caption"][:4]))
    torch.testing.assert_close(ds.modalities["text"][:4], z, atol=1e-5, rtol=0)


def test_digits_is_deterministic_and_seed_changes_pairing(tmp_cache):
    a = fm.data.digits(n_samples=40, seed=0, progress=False)
    b = fm.data.digits(n_samples=40, seed=0, progress=False, cache=False)
    c = fm.data.digits(n_samples=40, seed=1, progress=False)
    for m in a.names:
        assert torch.equal(a.modalities[m], b.modalities[m])
    assert not np.array_equal(a.meta["mnist_index"], c.meta["mnist_index"])
    assert not np.array_equal(a.meta["voice"], c.meta["voice"])


def test_vague_fraction_is_honoured(tmp_cache):
    ds = fm.data.digits(n_samples=2000, modalities=("image",), vague_fraction=0.3, seed=0)
    vague = np.isin(ds.meta["caption"], fm.data.captions.VAGUE_TEMPLATES).mean()
    assert abs(vague - 0.3) < 0.04


def test_digits_without_audio_keeps_the_other_views(tmp_cache):
    full = fm.data.digits(n_samples=30, seed=3, progress=False)
    two = fm.data.digits(n_samples=30, modalities=("image", "text"), seed=3, progress=False)
    assert two.names == ["image", "text"]
    assert torch.equal(full.modalities["image"], two.modalities["image"])
    assert torch.equal(full.modalities["text"], two.modalities["text"])


def test_digits_cache_hit_and_invalidation(tmp_cache, monkeypatch):
    first = fm.data.digits(n_samples=20, modalities=("audio",), seed=0, progress=False)
    files = sorted(p.name for p in tmp_cache.glob("audio-*.safetensors"))
    assert len(files) == 1

    def no_synthesis(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(speech, "render_clips", no_synthesis)
    again = fm.data.digits(n_samples=20, modalities=("audio",), seed=0, progress=False)
    assert torch.equal(first.modalities["audio"], again.modalities["audio"])
    assert list(again.meta["voice"]) == list(first.meta["voice"])
    # other parameters -> another key -> synthesis runs again
    with pytest.raises(AssertionError, match="cache"):
        fm.data.digits(
            n_samples=20,
            modalities=("audio",),
            seed=0,
            progress=False,
            audio=speech.AudioConfig(snr_db_range=(0.0, 10.0)),
        )
    with pytest.raises(AssertionError, match="cache"):
        fm.data.digits(n_samples=21, modalities=("audio",), seed=0, progress=False)


def test_digits_rebuilds_a_corrupt_cache_file(tmp_cache):
    fm.data.digits(n_samples=10, modalities=("audio",), seed=0, progress=False)
    (path,) = tmp_cache.glob("audio-*.safetensors")
    path.write_bytes(b"not a safetensors file")
    with pytest.warns(UserWarning, match="unreadable"):
        ds = fm.data.digits(n_samples=10, modalities=("audio",), seed=0, progress=False)
    assert ds.modalities["audio"].shape == (10, 32, 32)


def test_digits_cached_call_is_fast(tmp_cache):
    fm.data.digits(n_samples=200, seed=0, progress=False)
    start = time.perf_counter()
    fm.data.digits(n_samples=200, seed=0, progress=False)
    assert time.perf_counter() - start < 3.0


def test_missing_audio_extra_names_the_install_command(tmp_cache, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # import now fails
    monkeypatch.setattr(speech._espeak.Engine, "_lib", None)
    with pytest.raises(ImportError, match=r"pip install .*audio"):
        fm.data.digits(n_samples=10, seed=0, progress=False)
    ds = fm.data.digits(n_samples=10, modalities=("image", "text"), seed=0, progress=False)
    assert ds.names == ["image", "text"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"modalities": ("image", "video")}, "modalities"),
        ({"modalities": ()}, "modalities"),
        ({"n_samples": 0}, "n_samples"),
        ({"n_samples": 5001}, "5000"),
        ({"vague_fraction": 1.5}, "vague_fraction"),
        ({"seed": -1}, "seed"),
    ],
)
def test_digits_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fm.data.digits(**kwargs)


# ------------------------------------------------------------------ public digits
def test_public_digits():
    ds = fm.data.public_digits(n_samples=100, seed=0)
    x = ds.modalities["image"]
    assert x.shape == (100, 1, 28, 28) and 0 <= x.min() and x.max() <= 1
    assert x[:, :, :4].abs().sum() == 0  # centred with a 4-pixel frame, like MNIST
    assert torch.equal(ds.y, fm.data.public_digits(n_samples=100, seed=0).y)
    assert len(fm.data.public_digits()) == 1797
    with pytest.raises(ValueError, match="n_samples"):
        fm.data.public_digits(n_samples=2000)


def test_public_digits_with_server_written_captions():
    ds = fm.data.public_digits(n_samples=60, seed=1, modalities=("image", "text"), vague_fraction=0)
    assert ds.modalities["text"].shape == (60, 384) and len(ds.meta["caption"]) == 60
    # no vague caption: every caption's nearest class prototype is its own label most of the time
    named = (fm.pretrained.classify_text(ds.modalities["text"]).argmax(1) == ds.y).float().mean()
    assert named > 0.8
    with pytest.raises(ValueError, match="modalities=.*'image', 'text'"):
        fm.data.public_digits(10, modalities=("audio",))
    with pytest.raises(ValueError, match="vague_fraction=2"):
        fm.data.public_digits(10, modalities=("image", "text"), vague_fraction=2)
