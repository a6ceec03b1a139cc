"""FedMVP's representation knowledge transfer: the MCM and RAM loss terms.

FedMVP (Che et al., ECML-PKDD 2024, arXiv 2406.11048) trains a joint encoder next to
unimodal representations and ties them with two losses; both are ``LocalTrainer`` loss
terms here, for a model built with ``ModelSpec(unimodal=True)``:

- :class:`MCM` (multi-modal contrastive matching): NT-Xent between the joint representation
  and each unimodal one;
- :class:`RAM` (representation-aligned margin): pull the joint representation toward a
  unimodal one while that modality alone classifies better.

Weights, temperature and the form of both losses follow FedMVP's code:
``MCM(weight=0.01, tau=0.1)`` sums its per-modality NT-Xent terms, and ``RAM(weight=0.5)``
sends the gradient of the distance into both the joint and the unimodal representation. The
model around them is FedMVP's too when built with ``ModelSpec(unimodal=True,
shared_encoder=True, residual_head=True)`` (one encoder shared by every representation, a
residual block before the classifier); :func:`fedlab_mm.recipes` uses that recipe.

The kit's first reading is kept as options, because notebook 05 measures the two side by side:
``MCM(reduction="mean")`` averages over the modalities (half the code's loss with two, so
"weight 0.01" acted as 0.005) and ``RAM(detach_unimodal=True)`` holds the unimodal side fixed.

Still different from the code, and kept: RAM divides by the actual batch size (FedMVP divides
by its configured batch size, 64, so only a short last batch differs), and both losses use only
the rows where a modality is available (FedMVP's batches are completed first).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .losses import Batch, LossTerm, check_tau, mean_or_zero, nt_xent, zero_loss

__all__ = ["nt_xent", "MCM", "RAM", "REDUCTIONS"]

REDUCTIONS = ("mean", "sum")


def _unimodal(batch: Batch):
    feats = batch.features
    if not feats or not feats.get("unimodal"):
        raise ValueError("this loss needs unimodal representations: ModelSpec(..., unimodal=True)")
    return feats["unimodal"], feats["joint"], feats["present"] > 0


class MCM(LossTerm):
    """Multi-modal contrastive matching: NT-Xent between the joint representation and each
    modality's unimodal one (rows where that modality is available), summed over the
    modalities as FedMVP's code does (``reduction="sum"``, default) or averaged (``"mean"``,
    the kit's first reading)."""

    name = "mcm"

    def __init__(self, weight: float = 0.01, tau: float = 0.1, reduction: str = "sum") -> None:
        super().__init__(weight)
        self.tau = check_tau(tau)
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction={reduction!r} must be one of {REDUCTIONS}")
        self.reduction = reduction

    def compute(self, batch: Batch) -> torch.Tensor:
        unimodal, joint, available = _unimodal(batch)
        terms = [
            nt_xent(joint[available[:, j]], z[available[:, j]], self.tau)
            for j, z in enumerate(unimodal.values())
            if int(available[:, j].sum()) >= 2
        ]
        if self.reduction == "sum" and terms:
            return torch.stack(terms).sum()
        return mean_or_zero(terms, batch)

    def __repr__(self) -> str:
        return f"MCM(weight={self.weight:g}, tau={self.tau:g}, reduction={self.reduction!r})"


class RAM(LossTerm):
    """Representation-aligned margin: for each modality whose unimodal representation, put
    through the same classifier, has a lower cross-entropy on the labelled rows than the
    joint one, add ``||z_joint - z_m||_2`` over those rows; the sum is divided by the batch
    size. By default (``detach_unimodal=False``) the gradient reaches both ``z_J`` and
    ``z_m``, as in FedMVP's code; ``True`` holds ``z_m`` fixed so that only the joint
    representation is pulled toward the better view (the kit's first reading). Zero when no
    modality alone does better, or without labels."""

    name = "ram"

    def __init__(self, weight: float = 0.5, detach_unimodal: bool = False) -> None:
        super().__init__(weight)
        if not isinstance(detach_unimodal, bool):
            raise ValueError(f"detach_unimodal={detach_unimodal!r} must be True or False")
        self.detach_unimodal = detach_unimodal

    def compute(self, batch: Batch) -> torch.Tensor:
        unimodal, joint, available = _unimodal(batch)
        total = zero_loss(batch)
        labeled = batch.labeled
        if not labeled.any():
            return total
        head = batch.model.head
        y = batch.y[labeled]
        joint_loss = F.cross_entropy(batch.logits[labeled], y)
        for j, z in enumerate(unimodal.values()):
            rows = labeled & available[:, j]
            if not rows.any():
                continue
            with torch.no_grad():
                alone = F.cross_entropy(head(z[rows]), batch.y[rows])
            if alone < joint_loss:
                target = z[rows].detach() if self.detach_unimodal else z[rows]
                total = total + (joint[rows] - target).norm()
        return total / len(batch.y)

    def __repr__(self) -> str:
        return f"RAM(weight={self.weight:g}, detach_unimodal={self.detach_unimodal})"
