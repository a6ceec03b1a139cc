"""Client losses: the loss-term contract every mechanism plugs into, and the pure functions.

- :class:`Batch`: what a loss term sees of one mini-batch on one client;
- :class:`LossTerm`: a weighted term of the client's loss (:class:`CrossEntropy`,
  :class:`Proximal` here; each mechanism's terms in its own module, e.g.
  :class:`fedlab_mm.decomposition.Alignment`), summed by
  :class:`~fedlab_mm.federated.LocalTrainer` so an ablation is a list edit;
- the losses as pure functions of tensors, so a notebook can call one on two tensors:
  :func:`info_nce` (FedEPA's alignment), :func:`nt_xent` (FedMVP's MCM),
  :func:`orthogonality` (FedAlign's feature term), :func:`uniformity` and
  :func:`diversity` (FedEPA's context term);
- helpers for writing a term: :func:`zero_loss`, :func:`mean_or_zero`, :func:`check_tau`.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "Batch",
    "CrossEntropy",
    "LossTerm",
    "Proximal",
    "check_tau",
    "diversity",
    "info_nce",
    "mean_or_zero",
    "nt_xent",
    "orthogonality",
    "uniformity",
    "zero_loss",
]


# --------------------------------------------------------------------------- the contract
@dataclass
class Batch:
    """What a loss term sees for one mini-batch on one client."""

    model: torch.nn.Module
    modalities: dict[str, torch.Tensor]
    present: torch.Tensor  # (B, M) float
    y: torch.Tensor  # (B,)
    labeled: torch.Tensor  # (B,) bool
    logits: torch.Tensor  # (B, C)
    received: dict[str, torch.Tensor]  # the state the server sent this round
    client_state: dict[str, torch.Tensor]  # the client's private state
    features: dict = field(default_factory=dict)  # model.features(...): h, aligned, context, ...


class LossTerm(ABC):
    """A weighted term of the client's loss. Subclasses implement :meth:`compute`.

    ``LocalTrainer(losses=[CrossEntropy(), Proximal(mu=0.01)])``: an ablation is a list edit.
    """

    name = "loss"

    def __init__(self, weight: float = 1.0) -> None:
        if not np.isfinite(weight) or weight < 0:
            raise ValueError(f"{type(self).__name__} weight={weight} must be a finite number >= 0")
        self.weight = float(weight)

    @abstractmethod
    def compute(self, batch: Batch) -> torch.Tensor:
        """The unweighted value of the term on one batch (a scalar tensor)."""

    def __call__(self, batch: Batch) -> torch.Tensor:
        return self.weight * self.compute(batch)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(weight={self.weight:g})"


def zero_loss(batch: Batch) -> torch.Tensor:
    """A 0 that is connected to the graph (so ``backward`` works when a term has nothing)."""
    return batch.logits.sum() * 0.0


def mean_or_zero(terms: list[torch.Tensor], batch: Batch) -> torch.Tensor:
    """The mean of per-pair or per-modality loss terms; :func:`zero_loss` when there are none."""
    return torch.stack(terms).mean() if terms else zero_loss(batch)


def check_tau(tau: float) -> float:
    """A contrastive temperature must be a finite number > 0."""
    if not np.isfinite(tau) or tau <= 0:
        raise ValueError(f"tau={tau} must be a finite number > 0")
    return float(tau)


class CrossEntropy(LossTerm):
    """Cross-entropy on the *labelled* samples of the batch (0 if there are none)."""

    name = "ce"

    def compute(self, batch: Batch) -> torch.Tensor:
        n_labeled = int(batch.labeled.sum())
        if n_labeled == len(batch.y):  # the common case: no boolean indexing needed
            return F.cross_entropy(batch.logits, batch.y)
        if n_labeled == 0:
            return zero_loss(batch)
        return F.cross_entropy(batch.logits[batch.labeled], batch.y[batch.labeled])


class Proximal(LossTerm):
    """FedProx's proximal term ``mu / 2 * ||w - w_received||^2`` over the received weights."""

    name = "prox"

    def __init__(self, mu: float = 0.01) -> None:
        super().__init__(weight=mu)

    def compute(self, batch: Batch) -> torch.Tensor:
        total = batch.logits.new_zeros(())
        for name, param in batch.model.named_parameters():
            if param.requires_grad and name in batch.received:
                total = total + (param - batch.received[name]).pow(2).sum()
        return 0.5 * total

    def __repr__(self) -> str:
        return f"Proximal(mu={self.weight:g})"


# --------------------------------------------------------------------------- pure functions
def info_nce(u: torch.Tensor, v: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """Symmetric InfoNCE between paired batches ``u, v`` of shape ``(B, k)``.

    ``S = norm(u) norm(v)^T / tau``; the loss averages cross-entropy of the rows and of the
    columns of ``S`` against the diagonal. About ``log B`` for unrelated pairs, near 0 for
    aligned, well separated pairs at small ``tau``.
    """
    tau = check_tau(tau)
    if u.shape != v.shape or u.ndim != 2:
        raise ValueError(f"u and v must both be (B, k), got {tuple(u.shape)} and {tuple(v.shape)}")
    scores = F.normalize(u, dim=1) @ F.normalize(v, dim=1).T / tau  # (B, B)
    target = torch.arange(len(u))
    return 0.5 * (F.cross_entropy(scores, target) + F.cross_entropy(scores.T, target))


def nt_xent(u: torch.Tensor, v: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """NT-Xent over ``2B`` rows (SimCLR; FedMVP's code): stack ``[u; v]``, L2-normalise, and
    for each row classify its partner (row ``i +- B``) among the other ``2B - 1`` rows.

    About ``log(2B - 1)`` for unrelated pairs, near 0 for identical, well separated ones.
    """
    tau = check_tau(tau)
    if u.shape != v.shape or u.ndim != 2:
        raise ValueError(f"u and v must both be (B, k), got {tuple(u.shape)} and {tuple(v.shape)}")
    b = len(u)
    z = F.normalize(torch.cat([u, v]), dim=1)  # (2B, k)
    scores = z @ z.T / tau
    scores = scores.masked_fill(torch.eye(2 * b, dtype=torch.bool), float("-inf"))
    partner = torch.cat([torch.arange(b, 2 * b), torch.arange(b)])
    return F.cross_entropy(scores, partner)


def orthogonality(v: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean of ``cos(v_i, v_j)^2`` over pairs of the batch with different labels (>= 0;
    0 when different classes are orthogonal, or when the batch has one class)."""
    u = F.normalize(v, dim=1)
    differ = (y[:, None] != y[None, :]).float()  # (B, B)
    if differ.sum() == 0:
        return (u * 0.0).sum()
    return ((u @ u.T).pow(2) * differ).sum() / differ.sum()


def uniformity(vectors: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """``log mean_{i != j} exp(-t ||x_i - x_j||^2)`` over the rows of ``vectors`` ``(n, k)``.

    Wang & Isola's uniformity (ICML 2020) when the rows are unit vectors: near 0 when they
    sit together, lower the more evenly they spread over the sphere. Needs ``n >= 2`` rows.
    """
    if vectors.ndim != 2 or len(vectors) < 2:
        raise ValueError(f"vectors must be (n, k) with n >= 2, got shape {tuple(vectors.shape)}")
    n = len(vectors)
    sq = torch.cdist(vectors, vectors).pow(2)  # (n, n)
    off = ~torch.eye(n, dtype=torch.bool)
    return torch.logsumexp(-t * sq[off], dim=0) - math.log(n * (n - 1))


def diversity(context: dict, present: torch.Tensor, hinge: float = 1.0) -> torch.Tensor:
    """FedEPA's context term on plain tensors: spread the context features out and keep them
    modality-specific.

    :func:`uniformity` of all normalised present context vectors (every modality pooled),
    plus ``hinge * mean_i max(0, cos(c_m^i, c_n^i))`` over the modality pairs that a sample
    has both of. ``context`` maps each modality to ``(B, k)``; ``present`` is the ``(B, M)``
    bool mask in the same order. 0 when there is nothing to spread or compare.
    """
    names = list(context)
    if present.ndim != 2 or present.shape[1] != len(names):
        raise ValueError(
            f"present must be (B, {len(names)}) for modalities {names}, "
            f"got shape {tuple(present.shape)}"
        )
    present = present.bool()
    vectors = torch.cat(
        [F.normalize(context[m][present[:, j]], dim=1) for j, m in enumerate(names)]
    )
    total = vectors.new_zeros(())
    if len(vectors) >= 2:
        total = total + uniformity(vectors)
    cross = []
    for (i, m), (j, k) in itertools.combinations(enumerate(names), 2):
        both = present[:, i] & present[:, j]
        if both.any():
            sim = F.cosine_similarity(context[m][both], context[k][both], dim=1, eps=1e-8)
            cross.append(sim.clamp_min(0).mean())
    if cross and hinge:
        total = total + hinge * torch.stack(cross).mean()
    return total
