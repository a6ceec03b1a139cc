"""A :class:`MultimodalDataset` from plain arrays or tensors, validated: :func:`from_arrays`
(what :func:`fedlab_mm.data.from_hf` builds on)."""

from __future__ import annotations

import numpy as np
import torch

from .dataset import MultimodalDataset

__all__ = ["from_arrays"]


def _as_tensor(name: str, value) -> torch.Tensor:
    try:
        t = torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError) as err:
        raise ValueError(f"modality {name!r}: cannot be read as one numeric array ({err})") from err
    if not (
        t.is_floating_point() or t.dtype in (torch.uint8, torch.int16, torch.int32, torch.int64)
    ):
        raise ValueError(f"modality {name!r} must be numeric, got dtype {t.dtype}")
    if t.ndim < 2:
        t = t.reshape(len(t), 1) if t.ndim == 1 else t
    if not torch.isfinite(t.float()).all():
        raise ValueError(f"modality {name!r} holds NaN or infinite values: mark those rows missing")
    return t.float()


def from_arrays(modalities: dict, y, classes=None, present=None, labeled=None) -> MultimodalDataset:
    """A :class:`MultimodalDataset` from arrays or tensors, validated.

    Parameters
    ----------
    modalities : dict
        Modality name -> array ``(n, ...)`` (numeric; a 1-d array is one feature per row).
    y : array ``(n,)``
        Integer class labels ``0 .. C-1``.
    classes : list of str, optional
        Class names (default ``"0" .. "C-1"``).
    present : dict or array, optional
        Which rows really have each modality: a dict name -> bool ``(n,)``, or a bool array
        ``(n, M)`` in the order of ``modalities`` (default: all present). Values in missing
        rows are set to 0 and never reach a model.
    labeled : array ``(n,)`` of bool, optional
        Which labels training may use (default: all).

    Examples
    --------
    >>> ds = from_arrays({"x": np.random.rand(10, 3)}, y=np.arange(10) % 2)   # doctest: +SKIP
    """
    if not isinstance(modalities, dict) or not modalities:
        raise ValueError("modalities must be a non-empty dict of name -> array")
    tensors = {}
    for name, value in modalities.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"modality names must be non-empty strings, got {name!r}")
        tensors[name] = _as_tensor(name, value)
    labels = np.asarray(y)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"y must be a 1-d array of integer labels, got shape {labels.shape}, "
                         f"dtype {labels.dtype}")  # fmt: skip
    n = len(labels)
    if n == 0:
        raise ValueError("y is empty: a data set needs at least one sample")
    for name, t in tensors.items():
        if len(t) != n:
            raise ValueError(f"modality {name!r} has {len(t)} rows, y has {n}")
    if labels.min() < 0:
        raise ValueError(f"y must hold labels >= 0, got {labels.min()}")
    num_classes = int(labels.max()) + 1
    if classes is None:
        classes = [str(c) for c in range(num_classes)]
    classes = [str(c) for c in classes]
    if len(classes) < num_classes:
        raise ValueError(f"classes has {len(classes)} names, but y goes up to {num_classes - 1}")
    names = list(tensors)
    mask = torch.ones(n, len(names), dtype=torch.bool)
    if isinstance(present, dict):
        unknown = sorted(set(present) - set(names))
        if unknown:
            raise ValueError(f"present names modalities {unknown}; the modalities are {names}")
        for j, name in enumerate(names):
            if name in present:
                col = torch.as_tensor(np.asarray(present[name]))
                if col.shape != (n,) or col.dtype != torch.bool:
                    raise ValueError(f"present[{name!r}] must be a bool array of {n} rows")
                mask[:, j] = col
    elif present is not None:
        mask = torch.as_tensor(np.asarray(present))
        if mask.shape != (n, len(names)) or mask.dtype != torch.bool:
            raise ValueError(f"present must be a bool array ({n}, {len(names)}) or a dict")
    if not mask.any(1).all():
        rows = torch.nonzero(~mask.any(1)).flatten()[:5].tolist()
        raise ValueError(f"rows {rows} have no modality at all: drop them first")
    for j, name in enumerate(names):  # missing values are zeros, whatever was passed
        t = tensors[name]
        keep = mask[:, j].reshape(-1, *([1] * (t.ndim - 1)))
        tensors[name] = torch.where(keep, t, torch.zeros_like(t))
    kwargs = {}
    if labeled is not None:
        lab = torch.as_tensor(np.asarray(labeled))
        if lab.shape != (n,) or lab.dtype != torch.bool:
            raise ValueError(f"labeled must be a bool array of {n} rows")
        kwargs["labeled"] = lab
    return MultimodalDataset(
        modalities=tensors,
        y=torch.from_numpy(labels.astype(np.int64)),
        classes=classes,
        present=mask,
        **kwargs,
    )
