"""The multimodal network a :class:`~fedlab_mm.models.ModelSpec` describes, and
:func:`build_model`.

``MultimodalNet`` = one encoder per modality (to a common width ``d``) -> a fusion module ->
a linear classifier. Parameter names follow that structure (``encoders.<modality>.*``,
``fusion.*``, ``head.*``) so that later mechanisms can address "the top layers" or "the
adapters" by name.

Missing modalities contribute nothing: each encoder's *output* is multiplied by the
``present`` mask before fusion, so whatever values sit in a missing slot cannot reach the
prediction."""

from __future__ import annotations

import torch
from torch import nn

from ..pretrained import image_features
from .contract import ModelSpecLike
from .layers import (
    AttentionFusion,
    ConcatFusion,
    ImageEncoder,
    MeanFusion,
    MLPEncoder,
    ResidualMLP,
    SpectrogramEncoder,
)
from .spec import FROZEN_TOWERS, ModelSpec

__all__ = ["MultimodalNet", "build_model"]


def _tower_width(name: str, shape) -> int:
    """The representation width of a frozen tower: the kit's own (:data:`FROZEN_TOWERS`),
    or the width of ``(d,)`` features a tower computed beforehand."""
    own = FROZEN_TOWERS.get(name)
    return own[1] if own is not None and own[0] == tuple(shape) else int(shape[0])


def _frozen_tower(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "image" and x.ndim == 4:
        return image_features(x)
    # text: the frozen MiniLM embedding is the representation; (d,) inputs: precomputed
    return x.float()


class MultimodalNet(nn.Module):
    """Encoders -> fusion -> classifier, for any set of modalities.

    ``forward(modalities, present)`` returns logits ``(B, C)``; :meth:`embed` the fused
    representation ``(B, d)``; :meth:`encode` the per-modality features.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        shapes = dict(spec.inputs)
        encoders = {}
        for name, kind in spec.encoders:
            shape = shapes[name]
            if kind == "mlp":
                in_dim = 1
                for size in shape:
                    in_dim *= size
                encoders[name] = MLPEncoder(in_dim, spec.d, spec.hidden)
            elif kind == "image":
                encoders[name] = ImageEncoder(shape, spec.d)
            else:
                encoders[name] = SpectrogramEncoder(shape, spec.d)
        self.encoders = nn.ModuleDict(encoders)
        k = spec.split
        if k:
            self.aligned = nn.ModuleDict({m: nn.Linear(spec.d, k) for m in spec.names})
            self.context = nn.ModuleDict({m: nn.Linear(spec.d, k) for m in spec.names})
        if spec.fusion == "attention":
            self.fusion = AttentionFusion(spec.names, k, spec.heads)
        elif spec.fusion == "mean":
            self.fusion = MeanFusion(spec.names, k)
        else:
            self.fusion = ConcatFusion(spec.names, 2 * k if k else spec.d, spec.d, spec.hidden)
        if spec.unimodal:
            width = {m: 2 * k if k else spec.d for m in spec.names}
            if spec.frozen_towers:
                width = {m: _tower_width(m, shape) for m, shape in spec.inputs}
            self.unimodal = nn.ModuleDict(
                {m: nn.Linear(width[m], self.fusion.out_dim) for m in spec.names}
            )
            if spec.shared_encoder:
                self.common = nn.Linear(self.fusion.out_dim, self.fusion.out_dim)
        self.dropout = nn.Dropout(spec.dropout)
        if spec.residual_head:
            self.residual = ResidualMLP(self.fusion.out_dim, spec.dropout)
        self.head = nn.Linear(self.fusion.out_dim, spec.num_classes)

    def _check(self, modalities: dict, present: torch.Tensor | None) -> torch.Tensor:
        missing = [m for m in self.spec.names if m not in modalities]
        if missing:
            raise ValueError(
                f"the batch lacks modalities {missing}; the model needs {self.spec.names}"
            )
        batch = len(modalities[self.spec.names[0]])
        if present is None:
            return torch.ones(batch, len(self.spec.names))
        if present.shape != (batch, len(self.spec.names)):
            raise ValueError(
                f"present has shape {tuple(present.shape)}, "
                f"expected {(batch, len(self.spec.names))}"
            )
        return present.to(torch.float32)

    def encode(self, modalities: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-modality features, each ``(B, d)`` (before masking)."""
        return {m: self.encoders[m](modalities[m]) for m in self.spec.names}

    def features(self, modalities: dict[str, torch.Tensor], present=None) -> dict:
        """Everything a forward pass computes, for loss terms that need more than logits.

        Returns a dict with ``"h"`` (per-modality encoder outputs), ``"aligned"`` and
        ``"context"`` (per-modality parts, empty without ``split``), ``"present"`` (B, M)
        float, ``"joint"`` (B, width), ``"logits"`` (B, C) and ``"unimodal"`` (per-modality
        ``(B, width)``, empty without ``unimodal``).
        """
        mask = self._check(modalities, present)
        h = self.encode(modalities)
        if self.spec.split:
            aligned = {m: self.aligned[m](h[m]) for m in self.spec.names}
            context = {m: self.context[m](h[m]) for m in self.spec.names}
            parts = {m: [aligned[m], context[m]] for m in self.spec.names}
        else:
            aligned, context, parts = {}, {}, {m: [h[m]] for m in self.spec.names}
        joint = self.fusion(parts, mask)
        unimodal = {}
        if self.spec.unimodal:  # joint and unimodal reps on the unit sphere, as in FedMVP
            joint = self._on_sphere(joint)
            if self.spec.frozen_towers:  # no gradient reaches the towers; they are not state
                inputs = {m: _frozen_tower(m, modalities[m]) for m in self.spec.names}
            else:
                inputs = {m: torch.cat(parts[m], 1) for m in self.spec.names}
            unimodal = {m: self._on_sphere(self.unimodal[m](inputs[m])) for m in self.spec.names}
        if self.spec.residual_head:
            logits = self.head(self.residual(joint))
        else:
            logits = self.head(self.dropout(joint))
        return {
            "unimodal": unimodal,
            "h": h,
            "aligned": aligned,
            "context": context,
            "present": mask,
            "joint": joint,
            "logits": logits,
        }

    def _on_sphere(self, x: torch.Tensor) -> torch.Tensor:
        """A representation onto the unit sphere: through the shared encoder first when the
        spec has one (FedMVP's ``CommonEncoder``)."""
        if self.spec.shared_encoder:
            x = self.common(x)
        return nn.functional.normalize(x, dim=1)

    def embed(self, modalities: dict[str, torch.Tensor], present=None) -> torch.Tensor:
        """The fused joint representation ``(B, width)``."""
        return self.features(modalities, present)["joint"]

    def forward(self, modalities: dict[str, torch.Tensor], present=None) -> torch.Tensor:
        return self.features(modalities, present)["logits"]


def build_model(spec: ModelSpecLike, seed: int | None = None) -> nn.Module:
    """Build the network a spec describes; with ``seed``, with those initial weights.

    Any other spec with a ``build()`` method works too (e.g.
    :class:`fedlab_mm.mini_clip.BroadcastSpec`): see :class:`~.contract.ModelSpecLike`.
    """
    if not isinstance(spec, ModelSpec) and not callable(getattr(spec, "build", None)):
        raise TypeError(
            f"spec must be a ModelSpec or have a build() method (ModelSpecLike), "
            f"got {type(spec).__name__}"
        )
    make = (lambda: MultimodalNet(spec)) if isinstance(spec, ModelSpec) else spec.build
    if seed is None:
        return make()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return make()
