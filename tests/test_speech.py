import numpy as np
import pytest
import torch

from fedlab_mm.data import speech


def test_mel_filterbank_shape_and_triangles():
    fb = speech.mel_filterbank(n_mels=20, n_fft=512, sample_rate=16000)
    assert fb.shape == (20, 257)
    assert (fb >= 0).all() and (fb <= 1 + 1e-6).all()
    assert (fb.sum(1) > 0).all()  # no empty band
    peaks = fb.argmax(1)
    assert (peaks[1:] >= peaks[:-1]).all()  # bands ascend in frequency


def test_mel_filterbank_matches_a_naive_loop():
    n_mels, n_fft, sr = 8, 256, 8000
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    inv = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    pts = [inv(m) for m in np.linspace(mel(0), mel(sr / 2), n_mels + 2)]
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    naive = np.zeros((n_mels, len(freqs)))
    for m in range(n_mels):
        for k, f in enumerate(freqs):
            if pts[m] <= f <= pts[m + 1]:
                naive[m, k] = (f - pts[m]) / (pts[m + 1] - pts[m])
            elif pts[m + 1] < f <= pts[m + 2]:
                naive[m, k] = (pts[m + 2] - f) / (pts[m + 2] - pts[m + 1])
    np.testing.assert_allclose(speech.mel_filterbank(n_mels, n_fft, sr).numpy(), naive, atol=1e-6)


def test_log_mel_range_shape_and_tone_position():
    sr, n = 22050, 17640
    t = np.arange(n) / sr
    low = np.sin(2 * np.pi * 300 * t)
    high = np.sin(2 * np.pi * 5000 * t)
    spec = speech.log_mel(torch.tensor(np.stack([low, high]), dtype=torch.float32), sr)
    assert spec.shape == (2, 32, 32)
    assert spec.min() >= 0 and spec.max() <= 1
    band_low = spec[0].mean(1).argmax()
    band_high = spec[1].mean(1).argmax()
    assert band_low < band_high


def test_fit_length_centres_and_crops():
    wav = np.concatenate([np.zeros(10), np.ones(5), np.zeros(10)]).astype(np.float32)
    out = speech.fit_length(wav, 25, offset=0.5)
    assert out.shape == (25,) and out.sum() == 5 and out[10:15].sum() == 5
    assert speech.fit_length(np.ones(40, np.float32), 25).shape == (25,)


def test_batch_synthesis_is_reproducible_and_voices_differ():
    requests = [
        ("seven", "en+m3", 170, 50),
        ("seven", "en+m3", 170, 50),
        ("seven", "en+f2", 170, 50),
    ]
    (a, b, c), sr = speech.speak_batch(requests)
    again, _ = speech.speak_batch(requests)
    assert sr == 22050 and a.dtype == np.float32
    for x, y in zip((a, b, c), again):
        np.testing.assert_array_equal(x, y)
    assert a.shape != c.shape or not np.array_equal(a, c)
    assert np.abs(a).max() > 0.05


def test_in_process_speaker_plays_words():
    wav, sr = speech.synthesize("three", "en+f1", 150, 40)
    assert sr == 22050 and wav.ndim == 1 and 0.2 * sr < wav.size < 1.0 * sr


def test_every_listed_voice_exists():
    waves, _ = speech.speak_batch([("one", voice, 170, 50) for voice in speech.VOICES])
    assert all(w.size > 1000 for w in waves)


def test_speaker_rejects_bad_input():
    with pytest.raises(ValueError, match="voice"):
        speech.Speaker().say("one", voice="no-such-voice")
    with pytest.raises(ValueError, match="rate"):
        speech.speak_batch([("one", "en+m1", 20, 50)])
    with pytest.raises(ValueError, match="text"):
        speech.Speaker().say("  ")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_mels": 1},
        {"clip_seconds": 0.2},
        {"rate_range": (300, 200)},
        {"pitch_range": (0, 120)},
        {"snr_db_range": (10.0, 0.0)},
    ],
)
def test_audio_config_validation(kwargs):
    with pytest.raises(ValueError):
        speech.AudioConfig(**kwargs)
