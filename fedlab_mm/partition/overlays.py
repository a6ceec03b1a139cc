"""Heterogeneity laid over any partition: what each client can *see* of its samples.

The splits (:mod:`.splits`) decide who holds which samples; the functions here return a new
:class:`~fedlab_mm.partition.Partition` with per-client feature transforms, modality masks
or label masks added, so they compose with every split (and with each other). Call them as
``fm.partition.missing_modalities`` and so on.

References: feature skew as in Li et al., ICDE 2022; missing modalities with FedMVP's split
of the missing share between modalities (Che et al., arXiv 2406.11048); scarce labels as in
FedEPA (arXiv 2504.12025)."""

from __future__ import annotations

import numpy as np

from ..data import MultimodalDataset
from ..seed import as_rng
from .core import FEATURE_KINDS, Partition, record

__all__ = ["feature_skew", "missing_modalities", "scarce_labels"]


def _check_fraction(name: str, value, num_clients: int) -> np.ndarray:
    """A scalar or one value per client, each in [0, 1] -> array (N,)."""
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        arr = np.full(num_clients, float(arr))
    if arr.shape != (num_clients,):
        raise ValueError(f"{name} must be a number or {num_clients} numbers (one per client)")
    if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1:
        raise ValueError(f"{name}={value!r} must lie in [0, 1]")
    return arr


def feature_skew(
    partition: Partition,
    modality: str,
    kind: str = "noise",
    strength: float = 1.0,
    spread: str = "linear",
    seed=0,
) -> Partition:
    """Give clients different input distributions for the same labels.

    Client k gets level ``strength * t_k`` of one transformation, with ``t_k`` spread over
    [0, 1]: evenly across clients (``spread="linear"``) or at random (``"random"``).

    Kinds (see :func:`apply_transform`): ``"noise"`` adds Gaussian noise of that std;
    ``"rotate"`` rotates images by that many degrees; ``"gain"`` changes loudness by that
    many dB (a shift of a [0, 1] log-mel spectrogram with an 80 dB range; a scale
    ``10 ** (dB / 20)`` of other tensors).
    """
    if kind not in FEATURE_KINDS:
        raise ValueError(f"kind={kind!r} must be one of {FEATURE_KINDS}")
    if spread not in ("linear", "random"):
        raise ValueError(f"spread={spread!r} must be 'linear' or 'random'")
    if not isinstance(modality, str):
        raise ValueError(f"modality={modality!r} must be a modality name")
    if not np.isfinite(strength) or (kind == "noise" and strength < 0):
        raise ValueError(f"strength={strength} must be finite (and >= 0 for noise)")
    n = partition.num_clients
    t = np.linspace(0, 1, n) if spread == "linear" or n == 1 else as_rng(seed).random(n)
    if n == 1:
        t = np.ones(1)
    old = partition.transforms or [[] for _ in range(n)]
    new = [[*old[k], (modality, kind, float(strength * t[k]))] for k in range(n)]
    return partition.with_changes(
        record("feature_skew", modality=modality, kind=kind, strength=strength, spread=spread),
        transforms=new,
    )


def missing_modalities(
    partition: Partition, modalities, rate=0.0, split=None, absent=None, seed=0
) -> Partition:
    """Simulate missing modalities on top of any partition.

    Parameters
    ----------
    partition : Partition
    modalities : list of str or MultimodalDataset
        The modality names (columns of the ``present`` masks).
    rate : float, sequence (N,), or dict name -> float
        * a number (or one per client): that fraction of each client's samples misses
          exactly one modality, which one drawn by ``split`` (FedMVP's missing ratio);
        * a dict: each listed modality is missing independently at its own rate.
    split : dict name -> share, optional
        With a numeric ``rate``: how the missing share divides among modalities (FedMVP's
        ``img_missing_ratio = 0.5`` is ``{"image": 0.5, "text": 0.5}``). Default: evenly
        over all modalities.
    absent : dict name -> list of client ids, optional
        Clients that do not have that modality at all (e.g. no microphone).
    seed : int or Generator

    Never leaves a sample with no modality: a sample that would lose its last one keeps a
    random one of those its client has.
    """
    names = modalities.names if isinstance(modalities, MultimodalDataset) else list(modalities)
    m = len(names)
    if m < 2 or len(set(names)) != m:
        raise ValueError(f"modalities={names!r} must name at least two distinct modalities")
    n_clients = partition.num_clients
    absent = absent or {}
    for name, clients in absent.items():
        if name not in names:
            raise ValueError(f"absent names modality {name!r}; known: {names}")
        bad = [k for k in clients if not 0 <= k < n_clients]
        if bad:
            raise ValueError(f"absent[{name!r}] has client ids {bad} outside 0..{n_clients - 1}")
    has = np.ones((n_clients, m), dtype=bool)  # which modalities each client owns at all
    for name, clients in absent.items():
        has[list(clients), names.index(name)] = False
    if not has.any(1).all():
        empty = np.flatnonzero(~has.any(1)).tolist()
        raise ValueError(f"clients {empty} would have no modality at all; absent is too broad")

    independent = isinstance(rate, dict)
    if independent:
        unknown = set(rate) - set(names)
        if unknown:
            raise ValueError(f"rate names unknown modalities {sorted(unknown)}; known: {names}")
        per_mod = np.array([float(rate.get(nm, 0.0)) for nm in names])
        if not np.all(np.isfinite(per_mod)) or per_mod.min() < 0 or per_mod.max() > 1:
            raise ValueError(f"rate={rate!r}: every rate must lie in [0, 1]")
        if per_mod.min() == 1.0:
            raise ValueError(
                f"rate={rate!r} removes every modality from every sample; "
                "keep at least one modality's rate below 1"
            )
        if split is not None:
            raise ValueError("split only applies with a numeric rate, not a dict of rates")
    else:
        rates = _check_fraction("rate", rate, n_clients)
        share = np.full(m, 1.0 / m)
        if split is not None:
            unknown = set(split) - set(names)
            if unknown:
                raise ValueError(
                    f"split names unknown modalities {sorted(unknown)}; known: {names}"
                )
            share = np.array([float(split.get(nm, 0.0)) for nm in names])
            if share.min() < 0 or not np.isclose(share.sum(), 1.0):
                raise ValueError(f"split={split!r} must be non-negative shares summing to 1")

    rng = as_rng(seed)
    previous = partition.present
    present = []
    for k, idx in enumerate(partition.indices):
        mask = np.tile(has[k], (len(idx), 1)) if previous is None else previous[k] & has[k]
        if independent:
            drop = rng.random(mask.shape) < per_mod
            mask = mask & ~drop
        else:
            eligible = np.flatnonzero(mask.sum(1) >= 2)
            n_drop = min(len(eligible), int(round(rates[k] * len(idx))))
            for i in rng.choice(eligible, size=n_drop, replace=False):
                p = share * mask[i]
                if p.sum() == 0:  # the split only allows modalities this sample lacks
                    p = mask[i].astype(float)
                mask[i, rng.choice(m, p=p / p.sum())] = False
        dead = np.flatnonzero(~mask.any(1))
        for i in dead:  # restore one modality the client owns
            mask[i, rng.choice(np.flatnonzero(has[k]))] = True
        present.append(mask)
    return partition.with_changes(
        record(
            "missing_modalities",
            modalities=names,
            rate=rate if not isinstance(rate, np.ndarray) else rate.tolist(),
            split=split,
            absent=absent,
        ),
        present=present,
        modalities=tuple(names),
    )


def scarce_labels(partition: Partition, fraction=0.1, seed=0) -> Partition:
    """Only ``fraction`` of each client's labels may be used (FedEPA's label-scarce setting).

    ``fraction`` is one number or one per client. Each client gets ``round(fraction * n_k)``
    labelled samples, at least one unless its fraction is exactly 0.
    """
    fractions = _check_fraction("fraction", fraction, partition.num_clients)
    rng = as_rng(seed)
    labeled = []
    for k, idx in enumerate(partition.indices):
        n_lab = int(round(fractions[k] * len(idx)))
        if fractions[k] > 0:
            n_lab = max(1, n_lab)
        mask = np.zeros(len(idx), dtype=bool)
        mask[rng.choice(len(idx), size=min(n_lab, len(idx)), replace=False)] = True
        labeled.append(mask)
    return partition.with_changes(
        record("scarce_labels", fraction=fraction if np.isscalar(fraction) else fractions),
        labeled=labeled,
    )
