"""Spoken digits, synthesised offline with eSpeak NG, and log-mel spectrograms.

eSpeak NG is reached through the shared library that the ``espeakng-loader`` package
ships (GPL-3, so it is the optional ``audio`` extra). :mod:`fedlab_mm.data._espeak` calls its C
API with ``ctypes``: ``espeak_Initialize`` in synchronous mode, a callback that collects
16-bit samples, and ``espeak_Synth``. Synthesis takes about a millisecond per word, so
audio is cheap; the spectrograms are still cached by :mod:`fedlab_mm.data`.

The log-mel spectrogram is built from first principles (STFT -> power -> triangular mel
filters -> dB), the same recipe torchaudio and librosa use, written out so a reader can
follow it (notebook 00 rebuilds the filter bank with a loop and checks it against ours).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import _espeak

__all__ = [
    "DIGIT_WORDS",
    "VOICES",
    "AudioConfig",
    "Speaker",
    "require_espeak",
    "synthesize",
    "speak_batch",
    "render_clips",
    "fit_length",
    "mel_filterbank",
    "log_mel",
]

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# English base voices x eSpeak NG variants (male m*, female f*, and a few characters).
VOICES = (
    "en+m1",
    "en+m3",
    "en+m5",
    "en+m7",
    "en+f1",
    "en+f2",
    "en+f4",
    "en-us+m2",
    "en-us+f3",
    "en-us+klatt",
    "en-gb-scotland+m4",
    "en-gb-x-rp+f5",
)


@dataclass(frozen=True)
class AudioConfig:
    """How spoken digits are rendered into fixed-size log-mel spectrograms.

    Attributes
    ----------
    n_mels, frames : int
        Spectrogram size (mel bands x time frames).
    clip_seconds : float
        Every utterance is placed (with jitter) in a clip of this length.
    rate_range, pitch_range : tuple of int
        Speaking rate (words per minute) and pitch (0-99) are drawn uniformly from these.
    snr_db_range : tuple of float
        Additive white noise at a signal-to-noise ratio drawn from this range (dB). The
        default (-12, 8) makes audio about as informative as the other two views (a linear
        probe: audio 0.94, caption 0.94, image 0.89 on 2,000 samples).
    n_fft : int
        STFT window length in samples.
    """

    n_mels: int = 32
    frames: int = 32
    clip_seconds: float = 0.8
    rate_range: tuple[int, int] = (130, 220)
    pitch_range: tuple[int, int] = (25, 75)
    snr_db_range: tuple[float, float] = (-12.0, 8.0)
    n_fft: int = 1024

    def __post_init__(self) -> None:
        for name in ("n_mels", "frames", "n_fft"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 2:
                raise ValueError(f"{name}={value!r} must be an integer >= 2")
        if not 0.7 <= self.clip_seconds <= 5.0:
            raise ValueError(
                f"clip_seconds={self.clip_seconds} must lie in [0.7, 5.0] "
                "(a digit word lasts up to 0.65 s)"
            )
        lo, hi = self.rate_range
        if not 80 <= lo <= hi <= 450:
            raise ValueError(f"rate_range={self.rate_range} must satisfy 80 <= lo <= hi <= 450")
        lo, hi = self.pitch_range
        if not 0 <= lo <= hi <= 99:
            raise ValueError(f"pitch_range={self.pitch_range} must satisfy 0 <= lo <= hi <= 99")
        lo, hi = self.snr_db_range
        if not lo <= hi:
            raise ValueError(f"snr_db_range={self.snr_db_range} must satisfy lo <= hi")


def require_espeak():
    """Import ``espeakng_loader`` or raise an ImportError that names the install command."""
    return _espeak.require_espeak()


class Speaker:
    """Speak words in this process, for listening (``IPython.display.Audio``).

    eSpeak NG keeps a little state between utterances, so a word spoken here can differ by
    a few samples from the same word spoken elsewhere; data sets use :func:`render_clips`,
    which is exactly reproducible.

    Examples
    --------
    >>> wav = Speaker().say("seven", voice="en+f2", rate=160, pitch=50)
    >>> wav.dtype, Speaker().sample_rate
    (dtype('float32'), 22050)
    """

    def __init__(self) -> None:
        self._engine = _espeak.Engine()

    @property
    def sample_rate(self) -> int:
        """Samples per second of the synthesised audio (22,050 for eSpeak NG)."""
        return self._engine.sample_rate

    def say(self, text: str, voice: str = "en+m3", rate: int = 170, pitch: int = 50) -> np.ndarray:
        """Synthesise ``text``; return a float32 waveform in [-1, 1], shape ``(n_samples,)``."""
        _check_request(text, voice, rate, pitch)
        return _to_float(self._engine.say(text, voice, rate, pitch))


def _check_request(text, voice, rate, pitch) -> None:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text={text!r} must be a non-empty string")
    if voice not in VOICES:
        raise ValueError(f"voice={voice!r} is not one of the kit's voices {VOICES}")
    if not 80 <= int(rate) <= 450:
        raise ValueError(f"rate={rate} must lie in [80, 450] words per minute")
    if not 0 <= int(pitch) <= 99:
        raise ValueError(f"pitch={pitch} must lie in [0, 99]")


def _to_float(wav: np.ndarray) -> np.ndarray:
    return (wav.astype(np.float32) / 32768.0).clip(-1, 1)


def synthesize(word: str, voice: str, rate: int, pitch: int) -> tuple[np.ndarray, int]:
    """Speak one word; return ``(waveform, sample_rate)`` for ``IPython.display.Audio``."""
    speaker = Speaker()
    return speaker.say(word, voice=voice, rate=rate, pitch=pitch), speaker.sample_rate


def speak_batch(requests: list[tuple[str, str, int, int]]) -> tuple[list[np.ndarray], int]:
    """Speak many ``(word, voice, rate, pitch)`` requests in a fresh eSpeak NG process.

    A fresh process starts from the same library state every time, so the same list of
    requests always gives bit-identical waveforms (float32 in [-1, 1]).
    """
    require_espeak()
    for request in requests:
        _check_request(*request)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "waves.npz"
        payload = json.dumps([[w, v, int(r), int(p)] for w, v, r, p in requests])
        done = subprocess.run(
            [sys.executable, _espeak.__file__, str(out)],
            input=payload,
            text=True,
            capture_output=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the eSpeak NG worker failed:\n{done.stderr[-2000:]}")
        stored = np.load(out)
        bounds = np.cumsum(stored["lengths"])[:-1]
        waves = [_to_float(w) for w in np.split(stored["flat"], bounds)]
        return waves, int(stored["sample_rate"])


def fit_length(wav: np.ndarray, length: int, offset: float = 0.5) -> np.ndarray:
    """Trim silence, then place the sound in a zero clip of ``length`` samples.

    ``offset`` in [0, 1] slides the sound from the left edge (0) to the right edge (1);
    a sound longer than the clip is cut to it.
    """
    loud = np.flatnonzero(np.abs(wav) > 0.01)
    if loud.size:
        wav = wav[loud[0] : loud[-1] + 1]
    wav = wav[:length]
    start = int(round((length - wav.size) * float(np.clip(offset, 0.0, 1.0))))
    clip = np.zeros(length, dtype=np.float32)
    clip[start : start + wav.size] = wav
    return clip


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(
    n_mels: int, n_fft: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None
) -> torch.Tensor:
    """Triangular filters on the HTK mel scale.

    Returns
    -------
    torch.Tensor, shape ``(n_mels, n_fft // 2 + 1)``
        Row m rises linearly from mel point m to m + 1 and falls to m + 2 (peak 1).
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min ({f_min}) < f_max ({f_max}) <= sample_rate / 2")
    bins_hz = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)  # (F,)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (n_mels, 1) each
    rising = (bins_hz[None, :] - lo) / (mid - lo)
    falling = (hi - bins_hz[None, :]) / (hi - mid)
    return torch.from_numpy(np.clip(np.minimum(rising, falling), 0, None)).float()


def log_mel(
    waves: torch.Tensor,
    sample_rate: int,
    n_mels: int = 32,
    frames: int = 32,
    n_fft: int = 1024,
    top_db: float = 80.0,
) -> torch.Tensor:
    """Log-mel spectrograms of equal-length clips, scaled to [0, 1].

    Parameters
    ----------
    waves : (n, length) float tensor
    sample_rate : int
    n_mels, frames : int
        Output size; the hop length is chosen so that exactly ``frames`` windows fit.
    top_db : float
        Dynamic range kept below each clip's loudest bin; 0 dB maps to 1, -top_db to 0.

    Returns
    -------
    torch.Tensor, shape ``(n, n_mels, frames)``
    """
    n, length = waves.shape
    if length < n_fft + frames - 1:
        raise ValueError(f"clips of {length} samples are too short for n_fft={n_fft}")
    hop = (length - n_fft) // (frames - 1)
    window = torch.hann_window(n_fft)
    spec = torch.stft(
        waves, n_fft, hop_length=hop, window=window, center=False, return_complex=True
    )[..., :frames]  # (n, F, frames)
    power = spec.abs() ** 2
    mel = mel_filterbank(n_mels, n_fft, sample_rate) @ power  # (n, n_mels, frames)
    db = 10.0 * torch.log10(mel.clamp_min(1e-10))
    db = db - db.amax(dim=(1, 2), keepdim=True)
    return ((db + top_db) / top_db).clamp(0.0, 1.0)


def render_clips(
    labels: np.ndarray, cfg: AudioConfig, rng: np.random.Generator, progress: bool = True
) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """Speak each label's digit word with a random voice, rate, pitch, position and noise.

    Returns
    -------
    spectrograms : (n, n_mels, frames) float tensor
    meta : dict of per-sample arrays (voice, rate, pitch, snr_db) so any clip can be replayed.
    """
    from tqdm.auto import tqdm

    n = len(labels)
    voices = rng.choice(len(VOICES), size=n)
    rates = rng.integers(cfg.rate_range[0], cfg.rate_range[1] + 1, size=n)
    pitches = rng.integers(cfg.pitch_range[0], cfg.pitch_range[1] + 1, size=n)
    offsets = rng.uniform(0.2, 0.8, size=n)
    snr_db = rng.uniform(*cfg.snr_db_range, size=n)
    requests = [
        (DIGIT_WORDS[int(labels[i])], VOICES[voices[i]], int(rates[i]), int(pitches[i]))
        for i in range(n)
    ]
    spoken, sr = speak_batch(requests)
    length = int(round(cfg.clip_seconds * sr))
    waves = np.zeros((n, length), dtype=np.float32)
    for i in tqdm(range(n), desc="adding noise", disable=not progress, leave=False):
        clip = fit_length(spoken[i], length, offsets[i])
        signal_power = float(np.mean(clip**2)) + 1e-12
        noise_std = math.sqrt(signal_power / 10.0 ** (snr_db[i] / 10.0))
        waves[i] = clip + noise_std * rng.standard_normal(length, dtype=np.float32)
    spectrograms = log_mel(torch.from_numpy(waves), sr, cfg.n_mels, cfg.frames, cfg.n_fft)
    meta = {
        "voice": np.array([VOICES[v] for v in voices]),
        "rate": rates,
        "pitch": pitches,
        "snr_db": snr_db.astype(np.float32),
    }
    return spectrograms, meta
