"""A latent-factor generator whose ground truth is known, so that alignment and completion can
be *measured*, not just hoped for."""

from __future__ import annotations

import numpy as np
import torch

from ..seed import as_rng
from .dataset import MultimodalDataset, positive_int

__all__ = ["synthetic"]


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
    n_samples = positive_int("n_samples", n_samples)
    n_classes = positive_int("n_classes", n_classes, minimum=2)
    shared_dim = positive_int("shared_dim", shared_dim)
    private_dim = positive_int("private_dim", private_dim, minimum=0)
    dims = {"image": 64, "audio": 48, "text": 32} if dims is None else dict(dims)
    if not dims:
        raise ValueError("dims must name at least one modality, e.g. {'image': 64}")
    for name, width in dims.items():
        positive_int(f"dims[{name!r}]", width)
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
