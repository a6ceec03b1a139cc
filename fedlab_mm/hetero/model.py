"""FedMosaic's model family: :class:`HeteroSpec` (one size), :data:`SIZES` and
:class:`HeteroNet` (frozen pretrained MLP layers with Co-LoRA adapters, a frozen digit head)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .. import pretrained
from ..models import SpecMethods
from .base import FAMILIES, IN_DIM, SIZE_DIMS, loaded_base
from .colora import CoLoRALinear, DualLoRALinear
from .frames import block_frames

__all__ = ["SIZES", "HeteroNet", "HeteroSpec", "family_sizes", "tower_features"]


# ----------------------------------------------------------------- the model family
@dataclass(frozen=True)
class HeteroSpec(SpecMethods):
    """One size of the model family: ``depth`` hidden layers of ``width`` units over the
    tower's 64-d features, a frozen 10-way head; Co-LoRA adapters of rank ``rank``.

    Attributes
    ----------
    width, depth : int
        Hidden width and number of hidden layers (depth >= 2: two block layers).
    rank : int
        ``r`` of every adapter; P is ``(r, r)``, Q ``(1, r)`` at any width.
    scale : float
        ``alpha / r``.
    family : str
        How the sizes were pretrained (:data:`~.base.FAMILIES`): ``independent`` (the
        default) or ``grown`` (each size grown from the next smaller one, so that the sizes
        share a representation).
    """

    width: int = 32
    depth: int = 2
    rank: int = 8
    scale: float = 2.0
    num_classes: int = 10
    family: str = "independent"

    def __post_init__(self) -> None:
        for name, low in (("width", 8), ("depth", 1), ("rank", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}={value!r} must be an integer >= {low}")
        if self.rank > min(self.width, self.num_classes):
            raise ValueError(
                f"rank={self.rank} must be <= width={self.width} and <= num_classes="
                f"{self.num_classes} (the head carries a Co-LoRA block)"
            )
        if not np.isfinite(self.scale) or self.scale <= 0:
            raise ValueError(f"scale={self.scale} must be a finite number > 0")
        if self.family not in FAMILIES:
            raise ValueError(f"family={self.family!r} must be one of {FAMILIES}")
        if self.num_classes != 10:
            raise ValueError("num_classes must be 10: the frozen head is the digit classifier")

    names = property(lambda self: ["image"])
    # Co-LoRA layers, low to high: the first hidden layer and the head (index ``depth``)
    blocks = property(lambda self: (0, self.depth))

    @property
    def label(self) -> str:
        return f"{self.width}x{self.depth}"

    def build(self, align=None) -> HeteroNet:
        """The model of this size; ``align`` as in :class:`HeteroNet`."""
        return HeteroNet(self, align)


#: The three sizes of the family (:data:`~.base.SIZE_DIMS`).
SIZES = {name: HeteroSpec(*dims) for name, dims in SIZE_DIMS.items()}


def family_sizes(family: str = "independent") -> dict[str, HeteroSpec]:
    """:data:`SIZES` of one family (:data:`~.base.FAMILIES`), by name."""
    if family not in FAMILIES:
        raise ValueError(f"family={family!r} must be one of {FAMILIES}")
    return {name: spec.replace(family=family) for name, spec in SIZES.items()}


class HeteroNet(nn.Module):
    """The model family: frozen pretrained MLP layers with adapters, a frozen digit head.

    Inputs: images ``(B, 1, 28, 28)`` or their tower features ``(B, 64)``
    (:func:`tower_features`). ``features()`` returns ``{"joint": h, "logits": ...}``.

    ``align`` gives the Co-LoRA blocks' frozen frames: None (the default) uses
    :func:`align_frames`; any function ``align(spec)`` returning the same kind of list (one
    dict per block, low to high, with ``a (rank, d_in)``, ``b (d_out, rank)`` and optional
    scalar ``gain_in``, ``gain_out``, default 1) replaces it, e.g. to try another alignment
    in :func:`pq_transfer`. The spec stays as it is (hashable, JSON-friendly), so federated
    runs, which build every model from its spec, use :func:`align_frames`.
    """

    def __init__(self, spec: HeteroSpec, align=None) -> None:
        super().__init__()
        self.spec, self.align = spec, align
        layers, head = loaded_base(spec)
        frames = dict(zip(spec.blocks, block_frames(spec, align, [*layers, head])))
        self.layers = nn.ModuleList(
            CoLoRALinear(layer, scale=spec.scale, **frames[i])
            if i in frames
            else DualLoRALinear(layer, spec.rank, spec.scale)
            for i, layer in enumerate([*layers, head])
        )

    def features(self, modalities: dict, present=None) -> dict:
        x = pretrained.image_input(modalities, pretrained.image_features, IN_DIM, "tower features")
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return {"joint": x, "logits": self.layers[-1](x)}

    def forward(self, modalities: dict, present=None) -> torch.Tensor:
        return self.features(modalities, present)["logits"]


def tower_features(dataset):
    """``dataset`` with its images replaced by the frozen tower's 64-d features."""
    images = dataset.modalities.get("image")
    if images is None or tuple(images.shape[1:]) != (1, 28, 28):
        shape = None if images is None else tuple(images.shape[1:])
        raise ValueError(f"tower_features needs 'image' of shape (n, 1, 28, 28); got {shape}")
    feats = torch.cat(
        [pretrained.image_features(images[i : i + 512]) for i in range(0, len(images), 512)]
    )
    return dataset.replace(modalities={**dataset.modalities, "image": feats})
