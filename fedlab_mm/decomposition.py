"""FedEPA's aligned/context decomposition: loss terms that learn from unlabelled pairs.

Each modality's encoder output is split by two linear heads (``ModelSpec(split=k)``) into
``z_aligned`` (what the modalities share) and ``z_context`` (what is specific to one).
FedEPA (arXiv 2504.12025) aligns the aligned parts across modalities contrastively, keeps
aligned and context parts independent within a modality and keeps context features diverse.
Its equations are not public; the forms below are the reconstruction in the kit's
MECHANISMS notes (section 1.2) [R]:

- :class:`Alignment`: symmetric InfoNCE between the aligned features of every pair of
  modalities, positives = the same sample (CLIP's loss).
- :class:`Independence`: the batch form ``CKA_linear(a, c)`` (default) or per-sample
  orthogonality ``mean_i cos(a_i, c_i)^2``. Default: the batch form, because it is the one that
  works. Measured on the synthetic data (3 seeds, 10 clients, 10% labels, 15 rounds): with
  per-sample orthogonality ``z_context`` ends up a rotated copy of ``z_aligned`` (orthogonal
  vectors carrying the same information: CKA(z_context, shared latent) 0.69-0.78, with the
  private latent 0.01-0.03); with the batch form CKA(z_context, shared) falls to 0.22-0.35 and
  CKA(z_context, private) rises to 0.25-0.39, while CKA(z_aligned, shared) stays 0.73-0.78.
  Its cost: linear CKA is biased upwards for batches smaller than the feature width.
- :class:`Diversity`: uniformity of the normalised context vectors (Wang & Isola 2020) plus a
  hinge on the cross-modal similarity of one sample's context vectors.

The pure functions behind the terms (:func:`~fedlab_mm.losses.info_nce`,
:func:`~fedlab_mm.losses.uniformity`, :func:`~fedlab_mm.losses.diversity`) are in
:mod:`fedlab_mm.losses`.

All three use every sample, labelled or not, and only the modalities a sample has.

Weights. Each term's own default is 1, the weight at which the split is cleanest on the
synthetic data (the recovery figures above). :func:`fedepa`, the recipe, uses 0.1 for all
three, because with 5-10% labels the terms at weight 1 outweigh the few labelled samples and
cost accuracy; at 0.1 the split is weaker but accuracy is higher on the mean (the README's
FedEPA table, rebuilt by ``python -m benchmarks.fedepa``; the split in notebook 04).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .cka import linear_cka
from .federated import FedAvg, LocalTrainer, Recipe
from .losses import (
    Batch,
    CrossEntropy,
    LossTerm,
    check_tau,
    diversity,
    info_nce,
    mean_or_zero,
    zero_loss,
)
from .models import ModelSpec
from .personalization import ALA, ALAConfig

__all__ = [
    "linear_cka",
    "Alignment",
    "Independence",
    "Diversity",
    "INDEPENDENCE_FORMS",
    "fedepa",
    "recovery",
]

INDEPENDENCE_FORMS = ("orthogonal", "cka")


def _split_features(batch: Batch):
    feats = batch.features
    if not feats or not feats.get("aligned"):
        raise ValueError(
            "this loss needs aligned/context features: build the model with ModelSpec(..., split=k)"
        )
    return feats["aligned"], feats["context"], feats["present"] > 0


class Alignment(LossTerm):
    """Symmetric InfoNCE of ``z_aligned`` across every pair of modalities, averaged over the
    pairs; each pair uses the samples that have both modalities (at least 2)."""

    name = "align"

    def __init__(self, weight: float = 1.0, tau: float = 0.1) -> None:
        super().__init__(weight)
        self.tau = check_tau(tau)

    def compute(self, batch: Batch) -> torch.Tensor:
        aligned, _, present = _split_features(batch)
        names = list(aligned)
        terms = []
        for (i, m), (j, n) in itertools.combinations(enumerate(names), 2):
            both = present[:, i] & present[:, j]
            if int(both.sum()) >= 2:
                terms.append(info_nce(aligned[m][both], aligned[n][both], self.tau))
        return mean_or_zero(terms, batch)

    def __repr__(self) -> str:
        return f"Alignment(weight={self.weight:g}, tau={self.tau:g})"


class Independence(LossTerm):
    """Keep ``z_aligned`` and ``z_context`` of one modality independent.

    ``form="cka"`` (default): linear CKA of the two blocks over the batch;
    ``form="orthogonal"``: ``mean_i cos(a_i, c_i)^2``, which only asks the two vectors of one
    sample to be orthogonal and so lets ``z_context`` copy ``z_aligned`` in other directions.
    Averaged over modalities, present samples only.
    """

    name = "indep"

    def __init__(self, weight: float = 1.0, form: str = "cka") -> None:
        super().__init__(weight)
        if form not in INDEPENDENCE_FORMS:
            raise ValueError(f"form={form!r} must be one of {INDEPENDENCE_FORMS}")
        self.form = form

    def compute(self, batch: Batch) -> torch.Tensor:
        aligned, context, present = _split_features(batch)
        terms = []
        for j, m in enumerate(aligned):
            rows = present[:, j]
            if int(rows.sum()) < (2 if self.form == "cka" else 1):
                continue
            a, c = aligned[m][rows], context[m][rows]
            if self.form == "orthogonal":
                terms.append(F.cosine_similarity(a, c, dim=1, eps=1e-8).pow(2).mean())
            else:
                terms.append(linear_cka(a, c).to(a.dtype))
        return mean_or_zero(terms, batch)

    def __repr__(self) -> str:
        return f"Independence(weight={self.weight:g}, form={self.form!r})"


class Diversity(LossTerm):
    """Spread the context features out and keep them modality-specific.

    ``log mean_{i != j} exp(-2 ||c_i - c_j||^2)`` over all normalised present context vectors
    (uniformity) plus ``hinge * mean_i max(0, cos(c_m^i, c_n^i))`` over modality pairs.
    """

    name = "div"

    def __init__(self, weight: float = 1.0, hinge: float = 1.0) -> None:
        super().__init__(weight)
        if not np.isfinite(hinge) or hinge < 0:
            raise ValueError(f"hinge={hinge} must be a finite number >= 0")
        self.hinge = float(hinge)

    def compute(self, batch: Batch) -> torch.Tensor:
        _, context, present = _split_features(batch)
        return zero_loss(batch) + diversity(context, present, self.hinge)

    def __repr__(self) -> str:
        return f"Diversity(weight={self.weight:g}, hinge={self.hinge:g})"


def recovery(model: torch.nn.Module, dataset) -> pd.DataFrame:
    """How well the learned parts recover the ground truth of a synthetic data set.

    Linear CKA (over all samples, in float64) between each modality's ``z_aligned`` /
    ``z_context`` and the data's ``shared`` / ``private_<m>`` latents. A clean split has
    high ``aligned~shared``, low ``context~shared`` and high ``context~private``.

    Parameters
    ----------
    model : MultimodalNet
        Built with ``split=k``; put in eval mode here.
    dataset : MultimodalDataset
        With ``latents`` (``fm.data.synthetic``).

    Returns
    -------
    pandas.DataFrame
        One row per modality, columns ``aligned~shared``, ``context~shared``,
        ``context~private``, ``aligned~private``.
    """
    if not dataset.latents or "shared" not in dataset.latents:
        raise ValueError("dataset has no ground-truth latents: use fm.data.synthetic(...)")
    if not getattr(model, "spec", None) or not model.spec.split:
        raise ValueError("model has no aligned/context split: build it with ModelSpec(split=k)")
    model.eval()
    with torch.no_grad():
        feats = model.features(dataset.modalities, dataset.present)
    shared = dataset.latents["shared"].double()
    rows = {}
    for m in dataset.names:
        a, c = feats["aligned"][m].double(), feats["context"][m].double()
        private = dataset.latents[f"private_{m}"].double()
        pairs = {
            "aligned~shared": (a, shared),
            "context~shared": (c, shared),
            "context~private": (c, private),
            "aligned~private": (a, private),
        }
        rows[m] = {key: float(linear_cka(x, y)) for key, (x, y) in pairs.items()}
    return pd.DataFrame(rows).T


def fedepa(
    dataset,
    *,
    k: int = 16,
    align: float = 0.1,
    indep: float = 0.1,
    div: float = 0.1,
    tau: float = 0.1,
    independence: str = "cka",
    fusion: str = "attention",
    personalize: bool | ALAConfig = True,
    d: int = 64,
    hidden: int = 128,
    **trainer_kwargs,
) -> Recipe:
    """FedEPA as one recipe: ALA initialisation + aligned/context losses + attention fusion.

    Every part can be switched off for an ablation: a weight of 0 drops that loss term,
    ``fusion="concat"`` swaps the fusion for an MLP over the concatenated parts,
    ``fusion="mean"`` keeps the tokens and their LayerNorm but drops the attention (their
    plain mean), ``personalize=False`` uses plain overwrite (FedAvg's init). ``personalize``
    may also be an :class:`ALAConfig`.

    Parameters
    ----------
    dataset : MultimodalDataset
        Any data set with the modalities and classes to model (the shapes are read from it).
    k : int
        Width of ``z_aligned`` and ``z_context`` per modality.
    align, indep, div : float
        Weights of :class:`Alignment`, :class:`Independence` and :class:`Diversity` (>= 0).
        Default 0.1 each; see the module docstring for what was measured.
    tau : float
        InfoNCE temperature.
    independence : {"cka", "orthogonal"}
    fusion : {"attention", "concat", "mean"}
        See :data:`fedlab_mm.models.FUSIONS`; anything else raises a ``ValueError``.
    d, hidden : int
        Encoder output width and hidden width (see :class:`ModelSpec`).
    **trainer_kwargs
        Passed to :class:`LocalTrainer` (``epochs``, ``lr``, ``optimizer``, ...). Default
        ``max_grad_norm=5``, because with a few labels per batch SGD otherwise can diverge.

    Examples
    --------
    >>> recipe = fedepa(ds, align=0)                       # doctest: +SKIP
    >>> history = simulate(clients, *recipe, rounds=15)    # doctest: +SKIP
    """
    for name, value in (("align", align), ("indep", indep), ("div", div)):
        if isinstance(value, bool) or not np.isfinite(value) or value < 0:
            raise ValueError(f"{name}={value!r} must be a finite weight >= 0 (0 drops the term)")
    spec = ModelSpec.from_dataset(dataset, d=d, hidden=hidden, split=k, fusion=fusion)
    losses: list[LossTerm] = [CrossEntropy()]
    if align:
        losses.append(Alignment(align, tau=tau))
    if indep:
        losses.append(Independence(indep, form=independence))
    if div:
        losses.append(Diversity(div))
    if isinstance(personalize, ALAConfig):
        trainer_kwargs["init"] = ALA(personalize)
    elif personalize:
        trainer_kwargs["init"] = ALA()
    trainer_kwargs.setdefault("max_grad_norm", 5.0)
    return Recipe(spec, LocalTrainer(losses=losses, **trainer_kwargs), FedAvg())
