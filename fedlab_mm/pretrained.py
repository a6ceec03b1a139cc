"""Pretrained, frozen models for the digits, built only from public data and cached on disk.

FedMVP completes missing modalities with large frozen models (an image captioner, a
text-to-image generator). Offline, the kit has three public sources instead, and builds
small frozen stand-ins from them once, keeps them under :func:`fedlab_mm.config.cache_dir`
(:func:`fedlab_mm.data.cached`), and loads them once per process:

- an **image classifier** trained on scikit-learn's 8x8 digits (:func:`classify_images`).
  MNIST is another population (other writers, other scanner), so each image is first
  brought to the public set's format (bounding box, square, 8x8); even so it reaches only
  about 0.55 accuracy on the kit's MNIST digits, and that is the point to see: completion
  is only as good as the frozen model behind it;
- **caption prototypes**: all-MiniLM-L6-v2 embeddings of prompt-augmented captions per
  class, from coarse ("a handwritten digit") to fine ("a handwritten seven")
  (:func:`caption_prototypes`); a caption embedding's nearest prototype is its class;
- a **text-to-image generator**: a ridge map from caption embeddings to the public images
  of the same digit (:func:`text_to_image`);
- an **image tower**: a small CNN pretrained on the public digits and frozen, whose 64-d
  features are FedMVP's frozen image representation (:func:`image_features`; the text
  representation is the MiniLM embedding itself).

Nothing here sees a client's data during fitting; applied on a client, the models read
only that client's samples.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .data import cached, captions, public_digits

__all__ = [
    "to_public_format",
    "classify_images",
    "caption_prototypes",
    "classify_text",
    "text_to_image",
    "image_tower",
    "image_input",
    "image_features",
    "TOWER_WIDTH",
]

TOWER_WIDTH = 64


def to_public_format(images: torch.Tensor) -> torch.Tensor:
    """MNIST-style images ``(n, 1, 28, 28)`` in [0, 1] -> ``(n, 64)`` in scikit-learn's
    8x8 format: crop to the ink's bounding box, pad to a square, resize, scale to [0, 1]."""
    x = images.reshape(len(images), images.shape[-2], images.shape[-1]).float()
    ink = x > 0.1
    out = torch.zeros(len(x), 64)
    for k in range(len(x)):
        rows, cols = torch.nonzero(ink[k].any(1)).flatten(), torch.nonzero(ink[k].any(0)).flatten()
        if len(rows) == 0:
            continue
        box = x[k, int(rows.min()) : int(rows.max()) + 1, int(cols.min()) : int(cols.max()) + 1]
        h, w = box.shape
        side = max(h, w)
        square = torch.zeros(side, side)
        square[(side - h) // 2 : (side - h) // 2 + h, (side - w) // 2 : (side - w) // 2 + w] = box
        big = F.interpolate(square[None, None], size=(32, 32), mode="bilinear", align_corners=False)
        small = F.avg_pool2d(big, 4).flatten()  # (64,)
        out[k] = small / small.max().clamp_min(1e-6)
    return out


@lru_cache(maxsize=1)
def _image_classifier():
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    def fit() -> dict:
        bunch = load_digits()
        x = bunch.images.reshape(len(bunch.target), -1) / 16.0
        model = LogisticRegression(C=1.0, max_iter=2000).fit(x, bunch.target)
        return {k: torch.from_numpy(getattr(model, k)) for k in ("coef_", "intercept_", "classes_")}

    # The fitted weights, stored exactly (float64): the same classifier as a fresh fit.
    stored = cached("public-image-classifier", {"C": 1.0, "max_iter": 2000}, fit, cache=True)
    model = LogisticRegression(C=1.0, max_iter=2000)
    for k, v in stored.items():
        setattr(model, k, v.numpy())
    return model


def classify_images(images: torch.Tensor) -> torch.Tensor:
    """Class probabilities ``(n, 10)`` of the frozen public image classifier."""
    if len(images) == 0:
        return torch.zeros(0, 10)
    probs = _image_classifier().predict_proba(to_public_format(images).numpy())
    return torch.from_numpy(probs).float()


def _augmented_prompts(label: int) -> list[str]:
    """Coarse to fine: what any digit is, then this digit in every template."""
    return list(captions.VAGUE_TEMPLATES[:1]) + [
        captions.caption(label, t) for t in captions.TEMPLATES
    ]


@lru_cache(maxsize=1)
def caption_prototypes() -> torch.Tensor:
    """``(10, 384)`` unit vectors: the mean MiniLM embedding of each digit's prompts."""

    def make() -> dict:
        protos = [captions.embed(_augmented_prompts(d)).mean(0) for d in range(10)]
        return {"prototypes": F.normalize(torch.stack(protos), dim=1)}

    prompts = [_augmented_prompts(d) for d in range(10)]
    return cached("caption-prototypes", {"prompts": prompts}, make, cache=True)["prototypes"]


def classify_text(text: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """Class probabilities ``(n, 10)`` from caption embeddings: softmax of the cosine to each
    class prototype over ``temperature``."""
    sims = F.normalize(text.float(), dim=1) @ caption_prototypes().T
    return torch.softmax(sims / temperature, dim=1)


@lru_cache(maxsize=1)
def _generator(alpha: float = 1.0):

    pub = public_digits()
    rng = np.random.default_rng(0)
    table = captions.embed(captions.all_captions()[: 10 * len(captions.TEMPLATES)]).double()
    rows = pub.y.numpy() * len(captions.TEMPLATES) + rng.integers(
        0, len(captions.TEMPLATES), len(pub)
    )
    x, y = table[torch.from_numpy(rows)], pub.modalities["image"].flatten(1).double()
    mx, my = x.mean(0), y.mean(0)
    xc = x - mx
    w = torch.linalg.solve(
        xc.T @ xc + alpha * torch.eye(x.shape[1], dtype=x.dtype), xc.T @ (y - my)
    )
    return mx, w, my


def text_to_image(text: torch.Tensor) -> torch.Tensor:
    """``(n, 1, 28, 28)`` images in [0, 1] generated from caption embeddings ``(n, 384)``."""
    mx, w, my = _generator()
    out = (text.double() - mx) @ w + my
    return out.clamp(0, 1).float().reshape(len(text), 1, 28, 28)


def _tower_layers() -> torch.nn.Sequential:
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, TOWER_WIDTH), nn.ReLU(),
    )  # fmt: skip


def _pretrain_tower(epochs: int = 8, seed: int = 0) -> dict:
    """Train tower + a linear head on the public digits (random shifts of up to 3 pixels)."""

    pub = public_digits()
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        tower, head = _tower_layers(), torch.nn.Linear(TOWER_WIDTH, 10)
    params = list(tower.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    x, y = pub.modalities["image"], pub.y
    with torch.enable_grad():
        _fit(tower, head, opt, x, y, epochs, gen)
    return tower.state_dict()


def _fit(tower, head, opt, x, y, epochs, gen) -> None:
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for start in range(0, len(y), 64):
            idx = order[start : start + 64]
            shift = torch.randint(-3, 4, (2,), generator=gen).tolist()
            batch = torch.roll(x[idx], shifts=shift, dims=(2, 3))
            loss = F.cross_entropy(head(tower(batch)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


@lru_cache(maxsize=1)
def image_tower() -> torch.nn.Module:
    """The frozen image tower (eval mode, no gradients); pretrained once, then cached."""
    state = cached("image-tower", {"epochs": 8, "seed": 0}, _pretrain_tower, cache=True)
    tower = _tower_layers()
    tower.load_state_dict(state)
    for p in tower.parameters():
        p.requires_grad_(False)
    return tower.eval()


def image_input(modalities, featurize, width: int, what: str) -> torch.Tensor:
    """The ``image`` of a batch for models that read images or their precomputed features:
    images ``(B, 1, 28, 28)`` go through ``featurize`` (no gradient), features ``(B, width)``
    pass as they are; anything else is refused, naming ``what`` the features are."""
    x = modalities.get("image") if isinstance(modalities, dict) else None
    if x is None:
        raise ValueError("the batch has no 'image'; this model reads images only")
    x = x.float()
    if x.ndim == 4:
        with torch.no_grad():
            x = featurize(x)
    if x.shape[1:] != (width,):
        raise ValueError(
            f"image has per-sample shape {tuple(x.shape[1:])}; expected (1, 28, 28) "
            f"images or ({width},) {what}"
        )
    return x


def image_features(images: torch.Tensor) -> torch.Tensor:
    """``(n, 1, 28, 28)`` -> ``(n, 64)`` features of the frozen public image tower."""
    tower = image_tower()
    with torch.no_grad():
        return tower(images.float())
