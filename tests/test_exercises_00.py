"""Tested solutions of the exercises of notebook 00 (multimodal data), at smoke scale."""

import matplotlib.pyplot as plt
import numpy as np
import torch

import fedlab_mm as fm

N_DIGITS = 600  # the notebook's smoke-mode sizes
N_SYNTHETIC = 500
HARD_AUDIO = fm.data.speech.AudioConfig(snr_db_range=(-20.0, -5.0))


def text_probe(vague_fraction, seed=0):
    """The text probe accuracy and the share of captions that name the digit."""
    ds = fm.data.digits(
        n_samples=N_DIGITS,
        modalities=("text",),
        vague_fraction=vague_fraction,
        seed=seed,
        progress=False,
    )
    specific = 1.0 - np.isin(ds.meta["caption"], fm.data.captions.VAGUE_TEMPLATES).mean()
    return fm.viz.probe_accuracy(ds, seed=seed)["text"], float(specific)


def test_exercise_1_vague_captions():
    """Make captions uninformative with `fm.data.digits(..., vague_fraction=0.9)`. What happens
    to the text probe accuracy?"""
    default_accuracy, _ = text_probe(0.1)
    vague_accuracy, specific = text_probe(0.9)
    assert abs(specific - 0.1) < 0.05  # about 10% of the captions still name the digit
    # A probe can read the label off a caption that names it, and can only guess (1 in 10) for
    # a vague one, so the accuracy should be close to specific + (1 - specific) / 10.
    # Seeds 0-4 (digits seed = probe seed): accuracy 0.167, 0.167, 0.194, 0.139, 0.189
    # against that estimate 0.204, 0.182, 0.204, 0.180, 0.187; at vague_fraction=0.1 the
    # accuracy was 0.961, 0.950, 0.872, 0.906, 0.939.
    assert abs(vague_accuracy - (specific + (1 - specific) / 10)) < 0.1
    assert default_accuracy > 0.8
    assert vague_accuracy < default_accuracy - 0.5


def test_exercise_2_class_separation():
    """Raise `class_sep` in `fm.data.synthetic` (default 2.0) from 0 to 4 and probe each
    modality. Is there a sharp threshold, or a gradual rise?"""
    separations = [0.0, 1.0, 2.0, 3.0, 4.0]
    accuracy = {}  # class_sep -> {modality: probe accuracy}
    for class_sep in separations:
        ds = fm.data.synthetic(n_samples=N_SYNTHETIC, class_sep=class_sep, seed=0)
        accuracy[class_sep] = fm.viz.probe_accuracy(ds)
    # Probe accuracy, mean over the three modalities, for class_sep = 0, 1, 2, 3, 4:
    #   seed 0: 0.113 0.491 0.816 0.936 0.976    seed 1: 0.107 0.373 0.760 0.924 0.967
    #   seed 2: 0.064 0.482 0.829 0.929 0.969    seed 3: 0.102 0.560 0.869 0.967 1.000
    #   seed 4: 0.084 0.516 0.887 0.973 0.993
    # Every modality rose at every step on all five seeds.
    for modality in ("image", "audio", "text"):
        curve = [accuracy[s][modality] for s in separations]
        assert curve[0] < 0.2  # class_sep = 0: the label is independent of the data (chance 0.1)
        assert all(a < b for a, b in zip(curve, curve[1:]))
    # A gradual rise: a quarter of the way (class_sep = 1) the probe is halfway, neither at
    # chance nor at the top, as a sharp threshold would have it.
    halfway = np.mean(list(accuracy[1.0].values()))
    assert 0.25 < halfway < 0.75


def audio_clips(config=None, seed=0):
    return fm.data.digits(
        n_samples=200, modalities=("audio",), audio=config, seed=seed, progress=False
    )


def word_contrast(spectrograms):
    """Per clip: the loudest moment minus the typical one (mean over mel bands, per frame).
    A visible word is a bright blob in time, so the contrast is high."""
    loudness = spectrograms.mean(1)  # (n, frames)
    return loudness.amax(1) - loudness.median(1).values


def test_exercise_3_harder_audio():
    """Make the audio harder with `audio=fm.data.speech.AudioConfig(snr_db_range=(-20.0, -5.0))`.
    Plot a few spectrograms: can you still see the word?"""
    easy, hard = audio_clips(), audio_clips(HARD_AUDIO)
    fig = fm.viz.sample_grid(hard, "audio", per_class=3)
    assert len(fig.axes) == 10 * 3 and all(len(ax.images) == 1 for ax in fig.axes)
    plt.close(fig)

    # The same voices, speeds and pitches, only louder noise: the SNR is the same uniform draw
    # mapped onto the new range.
    assert np.array_equal(hard.meta["voice"], easy.meta["voice"])
    expected_snr = -20.0 + 15.0 * (easy.meta["snr_db"] + 12.0) / 20.0
    np.testing.assert_allclose(hard.meta["snr_db"], expected_snr, atol=1e-4)

    # Every single clip shows its word less clearly. Seeds 0-4: all 200 clips each, mean
    # contrast 0.025, 0.026, 0.025, 0.024, 0.023 against 0.063, 0.066, 0.064, 0.061, 0.060 at
    # the default range. (A linear audio probe falls too, 0.48 against 0.72 on seed 0, but
    # takes seconds to fit on noise this loud.)
    hard_contrast = word_contrast(hard.modalities["audio"])
    easy_contrast = word_contrast(easy.modalities["audio"])
    assert torch.all(hard_contrast < easy_contrast)
    assert hard_contrast.mean() < 0.6 * easy_contrast.mean()
