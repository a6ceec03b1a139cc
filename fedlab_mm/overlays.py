"""Heterogeneity laid over any partition: what each client can *see* of its samples.

:mod:`fedlab_mm.partition` decides who holds which samples; the functions here return a new
:class:`~fedlab_mm.partition.Partition` with per-client feature transforms, modality masks
or label masks added, so they compose with every split (and with each other). They are
re-exported by :mod:`fedlab_mm.partition`: call them as ``fm.partition.missing_modalities``.

References: feature skew as in Li et al., ICDE 2022; missing modalities with FedMVP's split
of the missing share between modalities (Che et al., arXiv 2406.11048); scarce labels as in
FedEPA (arXiv 2504.12025).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from .data import MultimodalDataset
from .seed import as_rng

if TYPE_CHECKING:  # partition.py imports this module, not the other way round
    from .partition import Partition

__all__ = [
    "corrupt_clients",
    "FEATURE_KINDS",
    "feature_skew",
    "apply_transform",
    "missing_modalities",
    "scarce_labels",
]

FEATURE_KINDS = ("noise", "rotate", "gain")


def _record(scheme: str, **kwargs) -> dict:
    clean = {}
    for k, v in kwargs.items():
        clean[k] = v.tolist() if isinstance(v, np.ndarray) else v
    return {"scheme": scheme, **clean}


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
        _record("feature_skew", modality=modality, kind=kind, strength=strength, spread=spread),
        transforms=new,
    )


def apply_transform(x: torch.Tensor, kind: str, value: float, rng) -> torch.Tensor:
    """Apply one feature transformation to a batch ``x`` of shape ``(n, ...)``."""
    if value == 0 or len(x) == 0:
        return x
    if kind == "noise":
        noise = torch.from_numpy(rng.standard_normal(tuple(x.shape)).astype(np.float32))
        return x + value * noise
    if kind == "rotate":
        if x.ndim != 4:
            raise ValueError(f"rotate needs images (n, C, H, W), got shape {tuple(x.shape)}")
        theta = math.radians(value)
        rot = torch.tensor(
            [[math.cos(theta), -math.sin(theta), 0.0], [math.sin(theta), math.cos(theta), 0.0]],
            dtype=x.dtype,
        )
        grid = torch.nn.functional.affine_grid(
            rot.expand(len(x), 2, 3), list(x.shape), align_corners=False
        )
        return torch.nn.functional.grid_sample(x, grid, align_corners=False)
    if kind == "gain":
        if x.ndim == 3:  # (n, mels, frames) log-mel in [0, 1] spanning 80 dB
            return (x + value / 80.0).clamp(0.0, 1.0)
        return x * 10.0 ** (value / 20.0)
    raise ValueError(f"kind={kind!r} must be one of {FEATURE_KINDS}")


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
        _record(
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
        _record("scarce_labels", fraction=fraction if np.isscalar(fraction) else fractions),
        labeled=labeled,
    )


CORRUPTIONS = ("labels", "flip", "noise")


def corrupt_clients(
    clients: list, client_ids, kind: str = "labels", modality=None, noise=3.0, seed=0
) -> list:
    """Broken clients, for testing robust aggregation: a copy of ``clients`` where the
    clients in ``client_ids`` have their *training* data corrupted.

    ``kind="labels"``: their training labels are randomly permuted (the pairs of inputs and
    labels no longer match); ``kind="flip"``: every label ``c`` becomes ``c + 1`` (mod the
    number of classes), a consistent lie; ``kind="noise"``: Gaussian noise of std ``noise``
    times the modality's std is added to ``modality`` (default: every modality). Test splits
    stay clean.
    """
    if kind not in CORRUPTIONS:
        raise ValueError(f"kind={kind!r} must be one of {CORRUPTIONS}")
    ids = {c.client_id for c in clients}
    bad = sorted(set(int(k) for k in client_ids) - ids)
    if bad:
        raise ValueError(f"client_ids {bad} are not among the clients {sorted(ids)}")
    rng = as_rng(seed)
    out = []
    for client in clients:
        if client.client_id not in set(int(k) for k in client_ids):
            out.append(client)
            continue
        train = client.train
        if kind == "labels":
            train = train.replace(y=train.y[torch.from_numpy(rng.permutation(len(train)))])
        elif kind == "flip":
            train = train.replace(y=(train.y + 1) % train.num_classes)
        else:
            names = train.names if modality is None else [modality]
            unknown = [m for m in names if m not in train.names]
            if unknown:
                raise ValueError(f"modality={modality!r} is not one of {train.names}")
            gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
            xs = dict(train.modalities)
            for m in names:
                x = xs[m]
                xs[m] = x + noise * x.std() * torch.randn(x.shape, generator=gen).to(x.dtype)
            train = train.replace(modalities=xs)
        out.append(dataclasses.replace(client, train=train))
    return out
